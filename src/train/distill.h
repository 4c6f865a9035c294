/* distill.h — train.distill: knowledge distillation from a teacher model (trainer-private;
 * docs/optimize.md "Distillation"). */
#ifndef KILN_TRAIN_DISTILL_H
#define KILN_TRAIN_DISTILL_H

#include "kiln/config.h"
#include "kiln/data.h"
#include "kiln/model.h"

typedef struct kiln_distill kiln_distill;

/* When cfg (a resolved config, or a stage's effective one) has train.distill: loads the teacher
 * (a run folder's newest checkpoint, EMA weights when it kept them, or an export version), checks
 * that it takes the student's inputs (same input shape and preprocessing) and has its number of
 * classes, and takes the teacher-logits input and the distillation loss that kiln_model_build
 * put into m's graph for train.distill (kiln_model.teacher_logits, .distill_loss).
 * *out NULL without train.distill. norm: the student's data normalization. Errors name the
 * config's file:line (KILN_ERR_INVALID). */
kiln_status kiln_distill_new(const kiln_cfg *cfg, kiln_model *m, const kiln_normalize *norm,
                             kiln_distill **out);
/* The loss to train (a scalar node of m's graph). */
kiln_node *kiln_distill_loss(const kiln_distill *d);
/* Runs the teacher (inference mode, forward only) on the first rows of x, the batch already in
 * the student's plan p, and writes its logits into p's teacher input. */
kiln_status kiln_distill_feed(kiln_distill *d, kiln_plan *p, const float *x, int rows);
void kiln_distill_free(kiln_distill *d);

#endif
