/* The course-shaped fixture tests/fixtures/npz/course_small.npz (tools/make_npz_fixtures.py):
 * 4 labelled 64x128 tiles as (N,2,H,W) under "training_set", 2 image-only tiles under
 * "test_set", with these value patterns. Include after testutil.h. */
#ifndef MS_COURSE_H
#define MS_COURSE_H

#define COURSE "tests/fixtures/npz/course_small.npz"
static inline int course_img(int n, int y, int x) { return (n * 31 + y * 7 + x * 3) % 256; }
static inline int course_mask(int n, int y, int x) { return (n + y / 16 + x / 32) % 5; }
static inline int course_test(int n, int y, int x) { return (n * 17 + y * 5 + x) % 256; }

#endif
