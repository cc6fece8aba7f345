/* job.h — one run of Medley's generators as the command line and the
 * studio both describe it: inputs (text, or a file's bytes, with weights),
 * the outputs wanted with their parameters, and a seed; its JSON, which
 * every output carries under "medley.job" (PNG/MP4 metadata, a TXT's marked
 * last line) so the run can be restored; and the steps of running it.
 *
 *   medley_job j;  medley_job_init(&j);
 *   medley_job_add_text(&j, "a red seven", 1.0);
 *   j.want[MD_MOD_IMAGE] = true;  j.seed = 7;
 *   medley_gens g;
 *   medley_gens_prepare(&g, &j, &bundle);          // generators, parameters checked
 *   md_gen_condition c;  medley_job_compose(&j, &bundle.sp, c.vec);
 *   char *json = medley_job_json(&j, &g, bundle.model_id);
 *   md_gen_output outs[4];
 *   medley_gens_run(&g, &j, &c, progress, user, cancel, outs);
 *   medley_output_write(json, MD_MOD_IMAGE, &outs[MD_MOD_IMAGE], "out.png");
 *
 * Failures are logged (md_last_error) naming the input, file or value.
 */
#ifndef MEDLEY_JOB_H
#define MEDLEY_JOB_H

#include "bundle.h"
#include "generator.h"

#define MEDLEY_JOB_MAX_INPUTS 16
#define MEDLEY_JOB_MAX_PARAMS 32
#define MEDLEY_JOB_KEY "medley.job"
#define MEDLEY_JOB_TXT_MARK "medley.job: "

typedef struct medley_job_input {
    md_modality modality;
    char *text;                      /* a text input */
    char *path;                      /* a file input read from disk, or */
    const void *bytes;               /* its bytes in memory (not owned; valid while the job runs) */
    size_t size;
    char *name;                      /* a file input's name as recorded (default: its path) */
    char hash[17];                   /* FNV-1a of the file's bytes (filled when composed) */
    bool declared;                   /* the modality was stated, not found from the bytes */
    double weight;
} medley_job_input;

typedef struct medley_job {
    medley_job_input in[MEDLEY_JOB_MAX_INPUTS];
    int nin;
    bool want[4];                    /* outputs by modality */
    int route[4];                    /* the path of each output: MEDLEY_ROUTE_* */
    uint64_t seed;
    char *params[MEDLEY_JOB_MAX_PARAMS][2];   /* name, value as typed (owned); the last set wins. A
                                               * name applies to every chosen output whose generator
                                               * has it; "image.guidance" (text., image., video.,
                                               * audio.) to that output only, over the unscoped one */
    int nparams;
} medley_job;

extern const char *const medley_modality_names[4];   /* "text", "image", "audio", "video" */

/* Which generator makes an output where there are two: pictures by tokens
 * (the token transformer) or by diffusion (the latent diffusion decoder). */
enum { MEDLEY_ROUTE_DEFAULT = 0, MEDLEY_ROUTE_TOKENS = 1, MEDLEY_ROUTE_DIFFUSION = 2 };
/* "tokens" | "diffusion" (n bytes) -> MEDLEY_ROUTE_*, -1: none. */
int medley_route_of(const char *name, size_t n);
/* The route a generator's name belongs to ("diffusion-image": diffusion). */
int medley_route_of_generator(const char *gen);
int medley_modality_of(const char *name, size_t n);  /* -1: none */
/* The candidates a route's generator draws by default for an image or a
 * video output (MEDLEY_ROUTE_DEFAULT: the token path); 0 for others. */
int medley_route_candidates(int modality, int route);
/* The generator of videos by diffusion: the video model when bundled,
 * else the picture model's frame 0 moved by the motion model (both
 * needed then; NULL with a message otherwise). */
md_generator *medley_video_diffusion_new(const medley_bundle *b, md_gen_workspace *ws);
/* The diffusion generators' default space guidance ("steer"). */
double medley_diffusion_steer(void);

void medley_job_init(medley_job *j);
void medley_job_free(medley_job *j);
/* Return the input's index, or -1 (full, or out of memory: logged). */
int medley_job_add_text(medley_job *j, const char *text, double weight);
int medley_job_add_file(medley_job *j, const char *path, int modality, double weight);   /* modality -1: from the bytes */
int medley_job_add_bytes(medley_job *j, const char *name, const void *bytes, size_t size, int modality,
                         double weight);
md_status medley_job_set_param(medley_job *j, const char *name, const char *value);

/* The job an output of Medley carries (a TXT's marked line, else PNG or MP4
 * metadata), as JSON; NULL when none (or unreadable). The bytes variant
 * reads an output held in memory (label names it). */
char *medley_job_read_from(const char *path);
char *medley_job_read_from_bytes(const void *bytes, size_t size, const char *label);
/* j initialised on entry. File inputs must still hold the bytes they had
 * (hash) when check_files; label names the source in messages. */
md_status medley_job_from_json(medley_job *j, const char *json, const char *label, bool check_files);

/* Reads every input and composes the condition (the inputs' modalities and
 * hashes are filled in). */
md_status medley_job_compose(medley_job *j, const md_space *sp, float *cond);
/* The typed text generators may read beside the condition
 * (md_gen_condition.text): the first text input of positive weight, or
 * NULL. */
const char *medley_job_text(const medley_job *j);
/* That text's weight over the sum of every input's |weight| (0 without one). */
float medley_job_text_share(const medley_job *j);

/* 16 hex digits of the FNV-1a hash of bytes (as medley_file_hash). */
void medley_bytes_hash(const void *bytes, size_t size, char out[17]);

/* The generators of a job's outputs, with its parameters applied. A host
 * that runs many jobs keeps one medley_gens and prepares it for each: the
 * generators (and the memory they planned) are made once and reused. */
typedef struct medley_gens {
    md_generator *gen[4];            /* made on first use (again when the route changes) */
    int route[4];                    /* the route gen[m] was made for */
    bool active[4];                  /* the outputs of the job prepared last */
    double pv[4][MD_GEN_MAX_PARAMS];
    int count;                       /* active outputs */
    md_gen_workspace *ws;            /* lent to every generator: they run in turn */
} medley_gens;

/* g zeroed before its first use. An output no generator makes, or a
 * parameter that is unknown to every chosen generator or out of range, is
 * MD_ERR_INVALID (logged). */
md_status medley_gens_prepare(medley_gens *g, const medley_job *j, const medley_bundle *b);
void medley_gens_free(medley_gens *g);
/* The job's JSON: inputs, outputs with every parameter's value, seed and
 * the models' ids. NULL: out of memory. */
char *medley_job_json(const medley_job *j, const medley_gens *g, const char *model_id);
/* Runs every generator in turn; progress fraction covers the whole job.
 * outs[m] is filled for each wanted m (freed on failure). */
md_status medley_gens_run(medley_gens *g, const medley_job *j, const md_gen_condition *c,
                          md_gen_progress_fn progress, void *user, const volatile int *cancel, md_gen_output outs[4]);

/* Writes an output with its job: PNG (image), MP4 (video), TXT (text; the
 * job on a marked last line), atomically. */
md_status medley_output_write(const char *job_json, md_modality m, const md_gen_output *o, const char *path);
extern const char *const medley_output_ext[4];       /* "txt", "png", "wav", "mp4" */

#endif
