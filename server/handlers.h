/* Route handlers, one file per resource; the route table is in routes.c. */
#ifndef MS_HANDLERS_H
#define MS_HANDLERS_H

#include "http.h"

/* health.c */
enum MHD_Result h_healthz(struct req *r);
enum MHD_Result h_readyz(struct req *r);
enum MHD_Result h_metrics(struct req *r);
/* schema.c */
enum MHD_Result h_schema(struct req *r);
/* {"id": c, "name": ..., "color": "#rrggbb"} of class c (NULL on allocation failure); /segment's
 * JSON adds its counts to it. */
cJSON *class_json(int c);
/* openapi.c */
enum MHD_Result h_openapi(struct req *r);
/* segment.c */
enum MHD_Result h_segment(struct req *r);
/* models.c */
enum MHD_Result h_models_list(struct req *r);
enum MHD_Result h_models_active_get(struct req *r);
enum MHD_Result h_models_active_put(struct req *r);
/* jobs.c (jobs.h) */
enum MHD_Result h_jobs_list(struct req *r);
enum MHD_Result h_jobs_create(struct req *r);
enum MHD_Result h_job_get(struct req *r);
enum MHD_Result h_job_delete(struct req *r);
enum MHD_Result h_job_curves(struct req *r);
enum MHD_Result h_job_resume(struct req *r);
/* datasets.c */
enum MHD_Result h_datasets_list(struct req *r);
enum MHD_Result h_datasets_upload(struct req *r);
enum MHD_Result h_dataset_get(struct req *r);
/* dataset_uncertain.c */
enum MHD_Result h_dataset_uncertain(struct req *r);
/* job_predict.c, job_eval.c: passes of a model over a dataset, as jobs (jobs.h) */
enum MHD_Result h_predictions_list(struct req *r);
enum MHD_Result h_predictions_create(struct req *r);
enum MHD_Result h_prediction_get(struct req *r);
enum MHD_Result h_prediction_cancel(struct req *r);
enum MHD_Result h_prediction_result(struct req *r);
enum MHD_Result h_evaluations_list(struct req *r);
enum MHD_Result h_evaluations_create(struct req *r);
enum MHD_Result h_evaluation_get(struct req *r);
enum MHD_Result h_evaluation_cancel(struct req *r);
enum MHD_Result h_evaluation_file(struct req *r);
/* labelstudio.c, ls_webhook.c: the Label Studio ML backend */
enum MHD_Result h_ls_health(struct req *r);
enum MHD_Result h_ls_setup(struct req *r);
enum MHD_Result h_ls_predict(struct req *r);
enum MHD_Result h_ls_webhook(struct req *r);
/* oip.c: the Open Inference Protocol (oip.h) */
enum MHD_Result h_oip_server(struct req *r);
enum MHD_Result h_oip_live(struct req *r);
enum MHD_Result h_oip_ready(struct req *r);
enum MHD_Result h_oip_model(struct req *r);
enum MHD_Result h_oip_model_ready(struct req *r);
enum MHD_Result h_oip_infer(struct req *r);
/* static.c */
enum MHD_Result h_index(struct req *r);
enum MHD_Result h_favicon(struct req *r);
enum MHD_Result h_static(struct req *r);

#endif
