/* test_caption.c — the caption generator and the text judge that reads
 * captions back.
 *
 * For 20000 synthetic samples of each kind and all four variants, the judge
 * must read exactly what the generator says it stated, and the generator
 * must state only true attributes. Then: determinism, variety (distinct
 * captions and distinct templates), argument errors, 57 phrasings a person
 * might type, and hostile input (1 MB of random bytes, runs of cue words).
 *
 * Prints one line per check; exits 0 only if every check passed. Needs no
 * data and no world.c: samples are built by hand. */
#include "caption.h"
#include "rng.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_checks, g_failed;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s - ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    g_checks++;
    g_failed += !ok;
}

static void quiet_log(md_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level >= MD_LOG_WARN)
        printf("       (logged) %s\n", msg);
}

/* The test's own value names (world.c's tables are not linked here). */
static const char *const attr_names[MD_ATTR_COUNT] = {"digit", "style", "ink", "bg", "pos", "size",
                                                      "motion", "speed", "speaker"};
static const int classes[MD_ATTR_COUNT] = {10, 2, 8, 8, 9, 3, 5, 2, 6};
static const char *const value_names[MD_ATTR_COUNT][10] = {
    {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"},
    {"hand", "photo"},
    {"black", "white", "red", "green", "blue", "yellow", "purple", "orange"},
    {"black", "white", "red", "green", "blue", "yellow", "purple", "orange"},
    {"tl", "t", "tr", "l", "c", "r", "bl", "b", "br"},
    {"small", "medium", "large"},
    {"left", "right", "up", "down", "bounce"},
    {"slow", "fast"},
    {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"},
};

static void attrs_str(const int *a, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < MD_ATTR_COUNT && n < cap; i++)
        if (a[i] >= 0)
            n += (size_t)snprintf(out + n, cap - n, "%s%s=%s", n ? " " : "", attr_names[i],
                                  a[i] < classes[i] ? value_names[i][a[i]] : "?");
}

/* A random valid sample of kind; partial drops some attributes (as a caller
 * may pass a sample it knows only in part). */
static md_world_sample random_sample(md_rng *r, md_world_kind kind, int64_t index, bool partial)
{
    md_world_sample s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.seed = 1234;
    s.index = index;
    for (int i = 0; i < MD_ATTR_COUNT; i++)
        s.attr[i] = -1;
    int *a = s.attr;
    a[MD_ATTR_DIGIT] = (int)md_rng_below(r, 10);
    if (kind == MD_WORLD_AUDIO)
        a[MD_ATTR_SPEAKER] = (int)md_rng_below(r, 6);
    else {
        a[MD_ATTR_STYLE] = kind == MD_WORLD_IMAGE && md_rng_below(r, 5) == 0;
        if (a[MD_ATTR_STYLE] == 0) {
            a[MD_ATTR_INK] = (int)md_rng_below(r, 8);
            a[MD_ATTR_BG] = (a[MD_ATTR_INK] + 1 + (int)md_rng_below(r, 7)) % 8;
            a[MD_ATTR_SIZE] = (int)md_rng_below(r, 3);
            if (kind == MD_WORLD_IMAGE)
                a[MD_ATTR_POS] = (int)md_rng_below(r, 9);
            else {
                a[MD_ATTR_MOTION] = (int)md_rng_below(r, 5);
                a[MD_ATTR_SPEED] = (int)md_rng_below(r, 2);
                a[MD_ATTR_SPEAKER] = (int)md_rng_below(r, 6);
            }
        }
    }
    if (partial)
        for (int i = 1; i < MD_ATTR_COUNT; i++)
            if (md_rng_below(r, 3) == 0)
                a[i] = -1;
    return s;
}

/* ---- a set of 64-bit string hashes (open addressing) ----------------------- */

typedef struct hset { uint64_t *v; size_t cap, n; } hset;

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h | 1;   /* 0 marks an empty slot */
}

static bool hset_add(hset *h, uint64_t x)
{
    size_t i = x & (h->cap - 1);
    while (h->v[i] && h->v[i] != x)
        i = (i + 1) & (h->cap - 1);
    if (h->v[i])
        return false;
    h->v[i] = x;
    h->n++;
    return true;
}

/* The caption with digits, colours and names replaced by D, C and S: what is
 * left is the template and its synonyms. Words are classified by the judge
 * itself, one at a time, so the test carries no vocabulary of its own. */
static void skeleton(const char *cap, char *out, size_t size)
{
    char buf[MD_CAPTION_MAX];
    snprintf(buf, sizeof buf, "%s", cap);
    size_t n = 0;
    out[0] = '\0';
    for (char *w = strtok(buf, " "); w; w = strtok(NULL, " ")) {
        int a[MD_ATTR_COUNT];
        md_caption_parse(w, a);
        const char *rep = a[MD_ATTR_DIGIT] >= 0 ? "D" : a[MD_ATTR_INK] >= 0 ? "C"
                        : a[MD_ATTR_SPEAKER] >= 0 ? "S" : w;
        n += (size_t)snprintf(out + n, size - n, "%s%s", n ? " " : "", rep);
        if (n >= size)
            break;
    }
}

/* "a" before a vowel sound ("a orange", "a 8"), or "an" before a consonant. */
static bool bad_article(const char *t)
{
    for (const char *p = t; *p; p++) {
        if (p != t && p[-1] != ' ')
            continue;
        const char *w = NULL;
        bool an = false;
        if ((p[0] | 32) == 'a' && p[1] == ' ')
            w = p + 2;
        else if ((p[0] | 32) == 'a' && p[1] == 'n' && p[2] == ' ')
            w = p + 3, an = true;
        if (!w)
            continue;
        bool vowel = (strchr("aeiou", *w) && strncmp(w, "one", 3) != 0) || *w == '8';
        if (vowel != an)
            return true;
    }
    return false;
}

/* ---- generator and judge agree, over every kind and variant ----------------- */

static void test_roundtrip(void)
{
    enum { N = 20000, V = MD_CAPTIONS_PER_SAMPLE };
    static const char *const kind_names[3] = {"image", "audio", "video"};
    hset caps = {calloc(1u << 20, 8), 1u << 20, 0}, skel = {calloc(1u << 20, 8), 1u << 20, 0};
    for (int kind = 0; kind < 3; kind++) {
        md_rng r;
        md_rng_init(&r, 77 + (uint64_t)kind);
        memset(caps.v, 0, (size_t)caps.cap * 8);
        memset(skel.v, 0, (size_t)skel.cap * 8);
        caps.n = skel.n = 0;
        int64_t made = 0, bad_status = 0, mismatch = 0, untrue = 0, no_digit = 0, nondet = 0,
                bad_text = 0, few_distinct = 0, longest = 0, n_stated[MD_ATTR_COUNT] = {0},
                n_present[MD_ATTR_COUNT] = {0};
        int shown = 0;
        printf("       examples (%s):\n", kind_names[kind]);
        for (int64_t i = 0; i < N; i++) {
            md_world_sample s = random_sample(&r, (md_world_kind)kind, i, i % 10 == 9);
            char text[V][MD_CAPTION_MAX];
            for (int v = 0; v < V; v++) {
                int st[MD_ATTR_COUNT], got[MD_ATTR_COUNT];
                md_status rc = md_caption_make(&s, v, text[v], sizeof text[v], st);
                made++;
                if (rc != MD_OK) {
                    bad_status++;
                    continue;
                }
                size_t len = strlen(text[v]);
                longest = MD_MAX(longest, (int64_t)len);
                if (len == 0 || strstr(text[v], "  ") || text[v][0] == ' ' || text[v][len - 1] == ' ' ||
                    strstr(text[v], " ,") || strstr(text[v], ",,") || bad_article(text[v]))
                    bad_text++;
                md_caption_parse(text[v], got);
                bool same = memcmp(got, st, sizeof st) == 0, sub = true;
                for (int a = 0; a < MD_ATTR_COUNT; a++) {
                    sub = sub && (st[a] < 0 || st[a] == s.attr[a]);
                    n_stated[a] += st[a] >= 0;
                    n_present[a] += s.attr[a] >= 0;
                }
                no_digit += st[MD_ATTR_DIGIT] != s.attr[MD_ATTR_DIGIT];
                untrue += !sub;
                if (!same && mismatch++ < 5) {
                    char e[256], g[256];
                    attrs_str(st, e, sizeof e);
                    attrs_str(got, g, sizeof g);
                    printf("       mismatch: \"%s\"\n         stated: %s\n         parsed: %s\n",
                           text[v], e, g);
                }
                if (i % 7 == 0) {
                    char again[MD_CAPTION_MAX];
                    int st2[MD_ATTR_COUNT];
                    md_caption_make(&s, v, again, sizeof again, st2);
                    nondet += strcmp(again, text[v]) != 0 || memcmp(st, st2, sizeof st) != 0;
                }
                hset_add(&caps, fnv(text[v]));
                char sk[2 * MD_CAPTION_MAX];
                skeleton(text[v], sk, sizeof sk);
                hset_add(&skel, fnv(sk));
                if (shown < 10 && i % 97 == v * 13) {
                    char e[256];
                    attrs_str(st, e, sizeof e);
                    printf("         v%d %-100s  [%s]\n", v, text[v], e);
                    shown++;
                }
            }
            int distinct = 0;
            for (int v = 0; v < V; v++) {
                bool dup = false;
                for (int u = 0; u < v; u++)
                    dup = dup || strcmp(text[u], text[v]) == 0;
                distinct += !dup;
            }
            few_distinct += distinct < 3;
        }
        const char *k = kind_names[kind];
        check(bad_status == 0, "%s: %lld captions made, %lld failed", k, (long long)made,
              (long long)bad_status);
        check(mismatch == 0, "%s: parse(make(s)) == stated for every caption (%lld differ)", k,
              (long long)mismatch);
        check(untrue == 0 && no_digit == 0, "%s: stated is a subset of the sample, digit always stated "
              "(%lld untrue, %lld without the digit)", k, (long long)untrue, (long long)no_digit);
        check(bad_text == 0 && longest < MD_CAPTION_MAX, "%s: no empty caption, double or stray "
              "space or comma, wrong a/an; longest %lld bytes", k, (long long)longest);
        check(nondet == 0, "%s: same (sample, variant) gives the same bytes and stated (%lld differ)", k,
              (long long)nondet);
        check(few_distinct < N / 50, "%s: 4 variants give >= 3 distinct captions for %.1f%% of "
              "samples (floor 98%%)", k, 100.0 * (double)(N - few_distinct) / N);
        printf("       %s stated share:", k);
        for (int a = 0; a < MD_ATTR_COUNT; a++)
            if (n_present[a])
                printf(" %s %.0f%%", attr_names[a], 100.0 * (double)n_stated[a] / (double)n_present[a]);
        printf("\n");
        /* Floors, about half of what the tables make today (image 58.5k / 44k,
         * audio 18k / 251, video 75.5k / 67k): audio is ~30 templates × ~8
         * digit forms × 10 digits × 7 voices (with case and a final period);
         * image and video multiply independent phrase, synonym and order
         * choices, so only the short captions (digit alone, digit + one
         * attribute) repeat. They catch a stuck RNG or a table cut short, not
         * a change of wording. */
        static const int64_t cap_floor[3] = {30000, 9000, 40000}, skel_floor[3] = {20000, 120, 30000};
        check((int64_t)caps.n >= cap_floor[kind], "%s: %zu distinct captions of %lld (floor %lld)", k,
              caps.n, (long long)made, (long long)cap_floor[kind]);
        check((int64_t)skel.n >= skel_floor[kind], "%s: %zu distinct templates (digits, colours, "
              "names masked; floor %lld)", k, skel.n, (long long)skel_floor[kind]);
    }
    free(caps.v);
    free(skel.v);
}

static void test_errors(void)
{
    md_rng r;
    md_rng_init(&r, 5);
    md_world_sample s = random_sample(&r, MD_WORLD_VIDEO, 3, false);
    char buf[MD_CAPTION_MAX], small[64];
    int st[MD_ATTR_COUNT];
    check(md_caption_make(&s, 0, buf, sizeof buf, NULL) == MD_OK, "make: stated may be NULL");
    check(md_caption_make(&s, 5, buf, sizeof buf, st) == MD_OK, "make: variant 5 (any int >= 0) is fine");
    /* find a caption longer than 63 bytes, then ask with cap 64 */
    int v = 0;
    while (md_caption_make(&s, v, buf, sizeof buf, NULL) == MD_OK && strlen(buf) < 64 && v < 100)
        v++;
    small[0] = 'x';
    md_status rc = md_caption_make(&s, v, small, sizeof small, st);
    check(strlen(buf) >= 64 && rc == MD_ERR_INVALID && small[0] == '\0' && st[MD_ATTR_DIGIT] == -1,
          "make: a %zu-byte caption into 64 bytes is MD_ERR_INVALID, empty buf, stated all -1",
          strlen(buf));
    check(md_caption_make(&s, 0, buf, 63, st) == MD_ERR_INVALID, "make: cap 63 refused");
    check(md_caption_make(&s, -1, buf, sizeof buf, st) == MD_ERR_INVALID, "make: variant -1 refused");
    check(md_caption_make(NULL, 0, buf, sizeof buf, st) == MD_ERR_INVALID, "make: NULL sample refused");
    check(md_caption_make(&s, 0, NULL, 100, st) == MD_ERR_INVALID, "make: NULL buffer refused");
    md_world_sample t = s;
    t.attr[MD_ATTR_DIGIT] = -1;
    check(md_caption_make(&t, 0, buf, sizeof buf, st) == MD_ERR_INVALID,
          "make: sample without a digit refused");
    t = s;
    t.attr[MD_ATTR_INK] = 8;
    check(md_caption_make(&t, 0, buf, sizeof buf, st) == MD_ERR_INVALID, "make: ink 8 refused");
    t = s;
    t.kind = (md_world_kind)3;
    check(md_caption_make(&t, 0, buf, sizeof buf, st) == MD_ERR_INVALID, "make: kind 3 refused");
    t = s;
    t.attr[MD_ATTR_POS] = 4;    /* a video has no position: the attribute is ignored */
    check(md_caption_make(&t, 0, buf, sizeof buf, st) == MD_OK && st[MD_ATTR_POS] == -1,
          "make: an attribute the kind has no words for is not stated");
}

/* ---- phrasings a person types ------------------------------------------------ */

/* spec: "key=value ..." with the names of value_names ("d" for digit). */
static void parse_spec(const char *spec, int *a)
{
    for (int i = 0; i < MD_ATTR_COUNT; i++)
        a[i] = -1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *kv = strtok(buf, " "); kv; kv = strtok(NULL, " ")) {
        char *eq = strchr(kv, '=');
        *eq = '\0';
        int k = strcmp(kv, "d") == 0 ? 0 : -1;
        for (int i = 1; i < MD_ATTR_COUNT && k < 0; i++)
            if (strcmp(kv, attr_names[i]) == 0)
                k = i;
        for (int v = 0; v < classes[k]; v++)
            if (strcmp(eq + 1, value_names[k][v]) == 0)
                a[k] = v;
    }
}

static void test_human(void)
{
    static const char *const cases[][2] = {
        {"a red seven moving left", "d=7 ink=red motion=left"},
        {"seven, written in green", "d=7 style=hand ink=green"},
        {"a small red 7 in the top left corner on black", "d=7 size=small ink=red pos=tl bg=black"},
        {"Someone says THREE.", "d=3"},
        {"a big blue 4 on a yellow background", "d=4 size=large ink=blue bg=yellow"},
        {"the number 9 bouncing slowly", "d=9 motion=bounce speed=slow"},
        {"someone saying seven", "d=7"},
        {"jackson says five", "d=5 speaker=jackson"},
        {"the word seven spoken by george", "d=7 speaker=george"},
        {"a voice says 7", "d=7"},
        {"a man pronouncing three", "d=3"},
        {"a photo of a hand showing seven", "d=7 style=photo"},
        {"sign language for 7", "d=7 style=photo"},
        {"a hand signing the number seven", "d=7 style=photo"},
        {"a photograph of the sign for 7", "d=7 style=photo"},
        {"a red 7 on black", "d=7 ink=red bg=black"},
        {"a 2 on a white background", "d=2 bg=white"},
        {"an 8 against white", "d=8 bg=white"},
        {"a 5 with a green background", "d=5 bg=green"},
        {"purple 6, white background", "d=6 ink=purple bg=white"},
        {"a 1 in green ink", "d=1 ink=green"},
        {"a red 7 at the top left on black", "d=7 ink=red bg=black pos=tl"},
        {"a 3 on the left", "d=3 pos=l"},
        {"a 3 at the left", "d=3 pos=l"},
        {"a 3 sliding to the left", "d=3 motion=left"},
        {"the top-left corner has a tiny 4", "d=4 size=small pos=tl"},
        {"a 0 in the centre", "d=0 pos=c"},
        {"zero in the center, drawn in orange", "d=0 pos=c style=hand ink=orange"},
        {"a large yellow two in the lower right", "d=2 size=large ink=yellow pos=br"},
        {"a crimson 9 drifting right quickly", "d=9 ink=red motion=right speed=fast"},
        {"a violet 6 rising, as theo says six", "d=6 ink=purple motion=up speaker=theo"},
        {"a golden 1 falling fast on a navy backdrop", "d=1 ink=yellow motion=down speed=fast bg=blue"},
        {"a 4 hopping up and down", "d=4 motion=bounce"},
        {"a mid-sized scarlet 5 in the middle of the bottom", "d=5 size=medium ink=red pos=b"},
        {"16 frames of a 5 sinking slowly", "d=5 motion=down speed=slow"},
        {"the number one in blue on a white background", "d=1 ink=blue bg=white"},
        {"a red one", "d=1 ink=red"},
        {"ONE.", "d=1"},
        {"the right-hand side shows a 6", "d=6 pos=r"},
        {"a right hand signing four", "d=4 style=photo"},
        {"a hand-drawn 3 in the upper right", "d=3 style=hand pos=tr"},
        {"a 7 on top of a black background", "d=7 bg=black"},
        {"Lucas: \"nine\"", "d=9 speaker=lucas"},
        {"nicholas saying 0", "d=0 speaker=nicolas"},
        {"A white 8 on black, moving up slowly.", "d=8 ink=white bg=black motion=up speed=slow"},
        {"a blue 3 bouncing at a fast pace while yweweler says three",
         "d=3 ink=blue motion=bounce speed=fast speaker=yweweler"},
        {"a video of a big green 2 scrolling rightwards", "d=2 size=large ink=green motion=right"},
        {"a huge emerald 7, centered, on a black background", "d=7 size=large ink=green pos=c bg=black"},
        {"written in red on a yellow background: 5", "d=5 style=hand ink=red bg=yellow"},
        {"an orange digit 8 on purple", "d=8 ink=orange bg=purple"},
        {"black background with a white 1 at the bottom", "d=1 ink=white bg=black pos=b"},
        {"a hand holding up three fingers", "d=3 style=photo"},
        {"a little purple six at the top", "d=6 size=small ink=purple pos=t"},
        {"theo's voice saying 2", "d=2 speaker=theo"},
        {"a 7, slow-moving, going left", "d=7 speed=slow motion=left"},
        {"Red on black: the digit 4, upper-left corner, tiny!", "d=4 ink=red bg=black pos=tl size=small"},
        {"an ink-red 9 over a plain ivory background", "d=9 ink=red bg=white"},
    };
    int n = (int)(sizeof cases / sizeof cases[0]), ok = 0;
    for (int i = 0; i < n; i++) {
        int want[MD_ATTR_COUNT], got[MD_ATTR_COUNT];
        parse_spec(cases[i][1], want);
        md_caption_parse(cases[i][0], got);
        bool same = memcmp(want, got, sizeof want) == 0;
        ok += same;
        if (!same) {
            char g[256];
            attrs_str(got, g, sizeof g);
            printf("       \"%s\"\n         want %s\n         got  %s\n", cases[i][0], cases[i][1], g);
        }
    }
    check(ok == n, "parse: %d of %d hand-written phrasings read as expected", ok, n);
}

/* ---- hostile input ------------------------------------------------------------ */

static bool all_unset(const int *a)
{
    for (int i = 0; i < MD_ATTR_COUNT; i++)
        if (a[i] != -1)
            return false;
    return true;
}

static bool all_valid(const int *a)
{
    for (int i = 0; i < MD_ATTR_COUNT; i++)
        if (a[i] < -1 || a[i] >= classes[i])
            return false;
    return true;
}

static void test_robust(void)
{
    int a[MD_ATTR_COUNT];
    md_caption_parse("", a);
    check(all_unset(a), "parse: empty string states nothing");
    md_caption_parse(NULL, a);
    check(all_unset(a), "parse: NULL states nothing");
    md_caption_parse(",.;:!?---''\"\"()[]{}  \t\n/\\@#$%^&*", a);
    check(all_unset(a), "parse: punctuation only states nothing");
    md_caption_parse("16 frames, 1.5 seconds, 10,000 pixels, 7th try, x7", a);
    check(all_unset(a), "parse: numerals inside numbers and words are no digit");
    md_caption_parse("someone has gone, none done, no one", a);
    check(all_unset(a), "parse: someone / gone / none / no one are no digit");
    md_caption_parse("caf\xc3\xa9 \xff\xfe seven \xc0\x80 \xed\xa0\x80 red\xe2\x80\x94on\x80 black", a);
    check(a[MD_ATTR_DIGIT] == 7 && a[MD_ATTR_INK] == 2 && a[MD_ATTR_BG] == 0,
          "parse: invalid UTF-8 around words is only a separator");

    enum { MB = 1 << 20 };
    char *big = malloc(MB + 1);
    md_rng r;
    md_rng_init(&r, 9);
    for (int i = 0; i < MB; i++)
        big[i] = (char)(1 + md_rng_below(&r, 255));
    big[MB] = '\0';
    double t0 = md_time_now();
    md_caption_parse(big, a);
    double t_rand = md_time_now() - t0;
    check(all_valid(a), "parse: 1 MB of random bytes: valid attributes, %.1f ms", 1e3 * t_rand);
    /* random letters and spaces: the most words per byte */
    for (int i = 0; i < MB; i++)
        big[i] = md_rng_below(&r, 4) == 0 ? ' ' : (char)('a' + md_rng_below(&r, 26));
    t0 = md_time_now();
    md_caption_parse(big, a);
    double t_words = md_time_now() - t0;
    /* runs of cue words: every look-ahead and look-behind rule fires */
    static const char *const runs[] = {"moving the ", "up and ", "red ", "on a ", "one ", "a ", "7 ",
                                       "1.1", "x", "hand ", "mid "};
    double t_runs = 0;
    bool valid = all_valid(a);
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        size_t len = strlen(runs[k]);
        for (size_t i = 0; i < MB; i++)
            big[i] = runs[k][i % len];
        t0 = md_time_now();
        md_caption_parse(big, a);
        t_runs = MD_MAX(t_runs, md_time_now() - t0);
        valid = valid && all_valid(a);
    }
    check(valid, "parse: 1 MB of random words and of repeated cue words: valid attributes");
    /* 1 MB takes ~10 ms at -O2; 1 s leaves room for sanitizers and slow CI */
    check(t_rand < 1.0 && t_words < 1.0 && t_runs < 1.0,
          "parse: linear time: 1 MB random %.1f ms, random words %.1f ms, worst cue run %.1f ms",
          1e3 * t_rand, 1e3 * t_words, 1e3 * t_runs);
    free(big);
}

int main(void)
{
    md_log_set_callback(quiet_log, NULL);
    test_roundtrip();
    test_errors();
    test_human();
    test_robust();
    printf("%d checks, %d failed\n", g_checks, g_failed);
    return g_failed ? 1 : 0;
}
