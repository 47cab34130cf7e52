/* The two DOM helpers every view uses. */

export const $ = (sel, root = document) => root.querySelector(sel);

/** Shows msg in an inline error element (hidden when msg is empty). */
export function showError(el, msg) {
  if (!el) return;
  el.textContent = msg || '';
  el.hidden = !msg;
}
