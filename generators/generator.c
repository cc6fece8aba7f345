/* generator.c — see generator.h. */
#include "generator.h"
#include "tokens.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

md_gen_workspace *md_gen_workspace_new(void)
{
    md_gen_workspace *w = calloc(1, sizeof *w);
    if (w && !(w->graph = md_graph_new((size_t)1 << 22))) {   /* grows to the largest run once */
        free(w);
        w = NULL;
    }
    if (!w)
        md_log(MD_LOG_ERROR, "generators' workspace: out of memory");
    return w;
}

void md_gen_workspace_free(md_gen_workspace *w)
{
    if (!w)
        return;
    md_tok_session_free(w->tokens);
    md_graph_free(w->graph);
    free(w);
}

void md_gen_params_default(const md_generator *g, double *vals)
{
    for (int i = 0; i < g->nparams && i < MD_GEN_MAX_PARAMS; i++)
        vals[i] = g->params[i].def;
}

int md_gen_param_index(const md_generator *g, const char *name)
{
    for (int i = 0; i < g->nparams; i++)
        if (strcmp(g->params[i].name, name) == 0)
            return i;
    return -1;
}

md_status md_gen_param_set(const md_generator *g, double *vals, const char *name, const char *value)
{
    int i = md_gen_param_index(g, name);
    if (i < 0) {
        char known[256] = "";
        for (int k = 0; k < g->nparams; k++) {
            size_t n = strlen(known);
            snprintf(known + n, sizeof known - n, "%s%s", k ? ", " : "", g->params[k].name);
        }
        md_log(MD_LOG_ERROR, "the %s generator has no parameter \"%s\" (it has: %s)", g->name, name, known);
        return MD_ERR_INVALID;
    }
    const md_gen_param_spec *p = &g->params[i];
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    bool ok = end != value && *end == '\0' && errno == 0 && isfinite(v);
    if (ok && p->type == MD_GEN_INT)
        ok = v == floor(v);
    if (!ok) {
        md_log(MD_LOG_ERROR, "%s %s: \"%s\" is not %s", g->name, name, value,
               p->type == MD_GEN_INT ? "an integer" : "a number");
        return MD_ERR_INVALID;
    }
    if (v < p->lo || v > p->hi) {
        md_log(MD_LOG_ERROR, "%s %s: %g is outside %g..%g (%s)", g->name, name, v, p->lo, p->hi, p->help);
        return MD_ERR_INVALID;
    }
    vals[i] = v;
    return MD_OK;
}

void md_gen_output_free(md_gen_output *o)
{
    if (!o)
        return;
    md_image_free(&o->image);
    md_video_free(&o->video);
    md_audio_free(&o->audio);
    free(o->text);
    memset(o, 0, sizeof *o);
}

void md_generator_free(md_generator *g)
{
    if (!g)
        return;
    if (g->free)
        g->free(g->self);
    free(g);
}
