/* test_generator.c — the generator interface's parameters: defaults, and
 * every kind of bad value refused with a message that names it. */
#include "check.h"
#include "generator.h"

#include <math.h>
#include <string.h>

static const md_gen_param_spec specs[] = {
    {"temperature", "sampling temperature", MD_GEN_FLOAT, 1.0, 0.05, 5.0},
    {"top_k", "keep the k likeliest tokens (0: all)", MD_GEN_INT, 0, 0, 1024},
    {"guidance", "classifier-free guidance scale", MD_GEN_FLOAT, 3.0, 0.0, 20.0},
};


int main(void)
{
    md_log_set_callback(check_quiet_log, NULL);
    md_generator g = {.name = "test", .output = MD_MOD_IMAGE, .params = specs, .nparams = 3};
    double p[MD_GEN_MAX_PARAMS];
    md_gen_params_default(&g, p);
    CHECK(p[0] == 1.0 && p[1] == 0 && p[2] == 3.0, "defaults");
    CHECK(md_gen_param_set(&g, p, "temperature", "0.7") == MD_OK && fabs(p[0] - 0.7) < 1e-12, "a value in range");
    CHECK(md_gen_param_set(&g, p, "top_k", "40") == MD_OK && p[1] == 40, "an integer");
    CHECK(md_gen_param_set(&g, p, "guidance", "-1") == MD_ERR_INVALID && strstr(md_last_error(), "guidance") &&
              strstr(md_last_error(), "0..20"), "negative guidance refused: %s", md_last_error());
    CHECK(md_gen_param_set(&g, p, "top_k", "2.5") == MD_ERR_INVALID && strstr(md_last_error(), "integer"),
          "a fraction where an integer is wanted: %s", md_last_error());
    CHECK(md_gen_param_set(&g, p, "temperature", "warm") == MD_ERR_INVALID && strstr(md_last_error(), "warm"),
          "not a number: %s", md_last_error());
    CHECK(md_gen_param_set(&g, p, "temperature", "nan") == MD_ERR_INVALID, "NaN refused: %s", md_last_error());
    CHECK(md_gen_param_set(&g, p, "temperature", "1e999") == MD_ERR_INVALID, "overflow refused: %s", md_last_error());
    CHECK(md_gen_param_set(&g, p, "temperature", "") == MD_ERR_INVALID, "empty refused: %s", md_last_error());
    CHECK(md_gen_param_set(&g, p, "steps", "10") == MD_ERR_INVALID && strstr(md_last_error(), "temperature, top_k"),
          "an unknown parameter lists the known ones: %s", md_last_error());
    CHECK(p[0] == 0.7 && p[1] == 40 && p[2] == 3.0, "refused values leave the parameters as they were");
    md_log_set_callback(NULL, NULL);
    return check_done();
}
