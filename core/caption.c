/* caption.c — captions of the demo world, and the rule-based text judge.
 *
 * The generator and the parser share one small grammar; the tests keep them
 * in step (parse(make(s)) == stated for every kind and variant):
 *
 *   digit   a digit word or a lone numeral ("seven", "7"; "16" is no digit);
 *           "one" counts only when no other digit is named ("someone",
 *           "gone" are other words, "no one", "one of" are no digit)
 *   ink     a colour right before the digit noun, size and style words
 *           between allowed ("a small red 7"), after "in" ("written in red")
 *           or before "ink" ("in red ink")
 *   bg      a colour after on/against/over ("on black"), or before
 *           "background"/"backdrop" ("with a black background"); a colour
 *           with no cue fills ink first, then bg ("red on black")
 *   pos     top/upper, bottom/lower, left, right and centre/center/middle,
 *           combined ("upper left corner", "top-left", "at the top")
 *   motion  a motion verb ("moving", "sliding", ...) then left/right with only
 *           "to the", articles and speed words between; rising, falling,
 *           up, down, bouncing, "up and down". "on the left" is a place.
 *   style   photo/sign/hand... → photo; handwritten/written/drawn... →
 *           handwritten ("hand-drawn" too); the first cue wins
 *
 * The word lists are this file's own, so it links without world.c. The
 * parser reads its input once through a 9-token window: linear time, no
 * allocation, any bytes accepted (only ASCII letters and digits form words).
 */
#include "caption.h"
#include "rng.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- parser ---------------------------------------------------------------- */

enum {
    C_END, C_UNK, C_PUNCT,
    C_DIGIT, C_ONE, C_NOUN,                 /* "seven"; "one"; number/digit/numeral */
    C_COLOUR, C_BGWORD, C_INKWORD,          /* red; background; ink */
    C_ON, C_IN, C_SKIP, C_OF, C_IS,         /* on/against; in; a/the/plain/jet; of; is */
    C_VPOS, C_HPOS, C_CENTER, C_SIDE,       /* top=0 bottom=2; left=0 right=2; middle; side */
    C_SIZE, C_MID, C_SIZED, C_SPEED, C_SPEAKER,
    C_MOTION, C_BARE, C_VERB, C_TO, C_AND,  /* rising; up/down; moving; to/towards; and */
    C_PHOTO, C_HAND, C_HANDWR, C_NEG, C_HOLD,
};

typedef struct word { const char *w; uint8_t cls; int8_t val; } word;

static const word words[] = {
    {"zero", C_DIGIT, 0}, {"nought", C_DIGIT, 0}, {"one", C_ONE, 1}, {"two", C_DIGIT, 2},
    {"three", C_DIGIT, 3}, {"four", C_DIGIT, 4}, {"five", C_DIGIT, 5}, {"six", C_DIGIT, 6},
    {"seven", C_DIGIT, 7}, {"eight", C_DIGIT, 8}, {"nine", C_DIGIT, 9},
    {"number", C_NOUN, 0}, {"digit", C_NOUN, 0}, {"numeral", C_NOUN, 0}, {"figure", C_NOUN, 0},
    {"black", C_COLOUR, 0}, {"ebony", C_COLOUR, 0}, {"white", C_COLOUR, 1}, {"ivory", C_COLOUR, 1},
    {"red", C_COLOUR, 2}, {"crimson", C_COLOUR, 2}, {"scarlet", C_COLOUR, 2},
    {"green", C_COLOUR, 3}, {"emerald", C_COLOUR, 3},
    {"blue", C_COLOUR, 4}, {"cobalt", C_COLOUR, 4}, {"navy", C_COLOUR, 4}, {"azure", C_COLOUR, 4},
    {"yellow", C_COLOUR, 5}, {"golden", C_COLOUR, 5}, {"gold", C_COLOUR, 5},
    {"purple", C_COLOUR, 6}, {"violet", C_COLOUR, 6},
    {"orange", C_COLOUR, 7}, {"tangerine", C_COLOUR, 7},
    {"background", C_BGWORD, 0}, {"backdrop", C_BGWORD, 0}, {"bg", C_BGWORD, 0},
    {"backgrounds", C_BGWORD, 0}, {"ink", C_INKWORD, 0}, {"strokes", C_INKWORD, 0},
    {"on", C_ON, 0}, {"against", C_ON, 0}, {"over", C_ON, 0}, {"onto", C_ON, 0}, {"upon", C_ON, 0},
    {"in", C_IN, 0}, {"of", C_OF, 0}, {"is", C_IS, 0},
    {"a", C_SKIP, 0}, {"an", C_SKIP, 0}, {"the", C_SKIP, 0}, {"plain", C_SKIP, 0},
    {"solid", C_SKIP, 0}, {"pure", C_SKIP, 0}, {"dark", C_SKIP, 0}, {"light", C_SKIP, 0},
    {"bright", C_SKIP, 0}, {"deep", C_SKIP, 0}, {"pale", C_SKIP, 0}, {"jet", C_SKIP, 0},
    {"snow", C_SKIP, 0}, {"royal", C_SKIP, 0}, {"pitch", C_SKIP, 0},
    {"top", C_VPOS, 0}, {"upper", C_VPOS, 0}, {"bottom", C_VPOS, 2}, {"lower", C_VPOS, 2},
    {"left", C_HPOS, 0}, {"right", C_HPOS, 2},
    {"center", C_CENTER, 0}, {"centre", C_CENTER, 0}, {"middle", C_CENTER, 0},
    {"central", C_CENTER, 0}, {"centered", C_CENTER, 0}, {"centred", C_CENTER, 0},
    {"side", C_SIDE, 0},
    {"small", C_SIZE, 0}, {"tiny", C_SIZE, 0}, {"little", C_SIZE, 0}, {"smaller", C_SIZE, 0},
    {"mini", C_SIZE, 0}, {"medium", C_SIZE, 1}, {"midsize", C_SIZE, 1}, {"midsized", C_SIZE, 1},
    {"large", C_SIZE, 2}, {"big", C_SIZE, 2}, {"huge", C_SIZE, 2}, {"giant", C_SIZE, 2},
    {"larger", C_SIZE, 2}, {"bigger", C_SIZE, 2}, {"enormous", C_SIZE, 2},
    {"mid", C_MID, 0}, {"sized", C_SIZED, 0}, {"size", C_SIZED, 0},
    {"slow", C_SPEED, 0}, {"slowly", C_SPEED, 0}, {"leisurely", C_SPEED, 0},
    {"fast", C_SPEED, 1}, {"quick", C_SPEED, 1}, {"quickly", C_SPEED, 1}, {"rapid", C_SPEED, 1},
    {"rapidly", C_SPEED, 1}, {"swift", C_SPEED, 1}, {"swiftly", C_SPEED, 1},
    {"brisk", C_SPEED, 1}, {"briskly", C_SPEED, 1}, {"speedily", C_SPEED, 1},
    {"george", C_SPEAKER, 0}, {"jackson", C_SPEAKER, 1}, {"lucas", C_SPEAKER, 2},
    {"nicolas", C_SPEAKER, 3}, {"nicholas", C_SPEAKER, 3}, {"theo", C_SPEAKER, 4},
    {"yweweler", C_SPEAKER, 5},
    {"leftward", C_MOTION, 0}, {"leftwards", C_MOTION, 0},
    {"rightward", C_MOTION, 1}, {"rightwards", C_MOTION, 1},
    {"rising", C_MOTION, 2}, {"rises", C_MOTION, 2}, {"rise", C_MOTION, 2},
    {"climbing", C_MOTION, 2}, {"climbs", C_MOTION, 2}, {"ascending", C_MOTION, 2},
    {"ascends", C_MOTION, 2}, {"upward", C_MOTION, 2}, {"upwards", C_MOTION, 2},
    {"falling", C_MOTION, 3}, {"falls", C_MOTION, 3}, {"fall", C_MOTION, 3},
    {"sinking", C_MOTION, 3}, {"sinks", C_MOTION, 3}, {"dropping", C_MOTION, 3},
    {"drops", C_MOTION, 3}, {"descending", C_MOTION, 3}, {"descends", C_MOTION, 3},
    {"downward", C_MOTION, 3}, {"downwards", C_MOTION, 3},
    {"bouncing", C_MOTION, 4}, {"bounces", C_MOTION, 4}, {"bounce", C_MOTION, 4},
    {"bouncy", C_MOTION, 4}, {"hopping", C_MOTION, 4}, {"hops", C_MOTION, 4},
    {"bobbing", C_MOTION, 4}, {"bobs", C_MOTION, 4}, {"jumping", C_MOTION, 4},
    {"jumps", C_MOTION, 4},
    {"up", C_BARE, 2}, {"down", C_BARE, 3},
    {"moving", C_VERB, 0}, {"moves", C_VERB, 0}, {"move", C_VERB, 0}, {"sliding", C_VERB, 0},
    {"slides", C_VERB, 0}, {"slide", C_VERB, 0}, {"drifting", C_VERB, 0}, {"drifts", C_VERB, 0},
    {"drift", C_VERB, 0}, {"going", C_VERB, 0}, {"goes", C_VERB, 0}, {"heading", C_VERB, 0},
    {"heads", C_VERB, 0}, {"travelling", C_VERB, 0}, {"traveling", C_VERB, 0},
    {"travels", C_VERB, 0}, {"gliding", C_VERB, 0}, {"glides", C_VERB, 0},
    {"scrolling", C_VERB, 0}, {"scrolls", C_VERB, 0}, {"shifting", C_VERB, 0},
    {"shifts", C_VERB, 0}, {"floating", C_VERB, 0}, {"floats", C_VERB, 0},
    {"flying", C_VERB, 0}, {"flies", C_VERB, 0}, {"running", C_VERB, 0}, {"runs", C_VERB, 0},
    {"rolling", C_VERB, 0}, {"rolls", C_VERB, 0}, {"panning", C_VERB, 0},
    {"to", C_TO, 0}, {"towards", C_TO, 0}, {"toward", C_TO, 0}, {"and", C_AND, 0},
    {"photo", C_PHOTO, 0}, {"photos", C_PHOTO, 0}, {"photograph", C_PHOTO, 0},
    {"photographed", C_PHOTO, 0}, {"sign", C_PHOTO, 0}, {"signs", C_PHOTO, 0},
    {"signed", C_PHOTO, 0}, {"signing", C_PHOTO, 0}, {"gesture", C_PHOTO, 0},
    {"gesturing", C_PHOTO, 0}, {"fingers", C_PHOTO, 0}, {"finger", C_PHOTO, 0},
    {"asl", C_PHOTO, 0},
    {"hand", C_HAND, 0}, {"hands", C_HAND, 0},
    {"handwritten", C_HANDWR, 0}, {"handwriting", C_HANDWR, 0}, {"written", C_HANDWR, 0},
    {"drawn", C_HANDWR, 0}, {"drawing", C_HANDWR, 0}, {"scribbled", C_HANDWR, 0},
    {"sketched", C_HANDWR, 0}, {"penned", C_HANDWR, 0},
    {"no", C_NEG, 0}, {"any", C_NEG, 0}, {"each", C_NEG, 0}, {"every", C_NEG, 0},
    {"which", C_NEG, 0}, {"this", C_NEG, 0}, {"that", C_NEG, 0}, {"these", C_NEG, 0},
    {"those", C_NEG, 0}, {"them", C_NEG, 0},
    {"hold", C_HOLD, 0}, {"holds", C_HOLD, 0}, {"holding", C_HOLD, 0}, {"held", C_HOLD, 0},
    {"upside", C_HOLD, 0}, {"close", C_HOLD, 0},
};

typedef struct tok { uint8_t cls; int8_t val; } tok;

enum { BEHIND = 4, AHEAD = 4, WIN = BEHIND + 1 + AHEAD, WORD_MAX = 15 };

static bool is_digit(unsigned c) { return c - '0' < 10u; }
static bool is_alnum(unsigned c) { return is_digit(c) || (c | 32u) - 'a' < 26u; }

/* Reads the next token at *pp: a run of ASCII letters and digits, lowercased
 * (a run of digits also takes in '.', ',' or ':' between digits, so "1.5"
 * and "10,000" are one token), or one of ",;.!?()" as C_PUNCT, which breaks
 * the cues that need adjacency. Every other byte only separates. */
static tok next_tok(const unsigned char **pp)
{
    const unsigned char *p = *pp;
    while (*p && !is_alnum(*p)) {
        unsigned c = *p++;
        if (strchr(",;.!?()", (int)c)) {
            *pp = p;
            return (tok){C_PUNCT, 0};
        }
    }
    if (!*p) {
        *pp = p;
        return (tok){C_END, 0};
    }
    char w[WORD_MAX + 1];
    size_t n = 0;
    bool digits = true, number = false;
    for (;; p++) {
        unsigned c = *p;
        if (!is_alnum(c)) {
            if (digits && (c == '.' || c == ',' || c == ':') && is_digit(p[1])) {
                number = true;
                continue;
            }
            break;
        }
        digits = digits && is_digit(c);
        if (n < WORD_MAX)
            w[n] = (char)(c | (is_digit(c) ? 0u : 32u));
        n++;
    }
    *pp = p;
    if (digits)
        return n == 1 && !number ? (tok){C_DIGIT, (int8_t)(w[0] - '0')} : (tok){C_UNK, 0};
    if (n > WORD_MAX)
        return (tok){C_UNK, 0};
    w[n] = '\0';
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (words[i].w[0] == w[0] && strcmp(words[i].w, w) == 0)
            return (tok){words[i].cls, words[i].val};
    return (tok){C_UNK, 0};
}

typedef struct pstate {
    int digit, one, style, ink, bg, v, h, size, motion, speed, speaker;
    int unc[4], nunc;   /* colours with no ink/bg cue, in order */
    bool pos_seen;
    bool pending;       /* after a motion verb, only fillers since */
    int skip;           /* tokens a look-ahead rule already read */
} pstate;

static void set1(int *slot, int v)
{
    if (*slot < 0)
        *slot = v;
}

enum { ROLE_NONE, ROLE_INK, ROLE_BG };

/* Ink or background, from the words around colour token t (t[-BEHIND] ..
 * t[AHEAD] are valid). Strongest cue first: a following noun, then a
 * preceding preposition, then the digit it modifies, then "background of". */
static int colour_role(const tok *t)
{
    const tok *n = t + 1;
    while (n < t + AHEAD && n->cls == C_COLOUR && n->val == t->val)
        n++;    /* "lemon yellow background" */
    if (n->cls == C_BGWORD)
        return ROLE_BG;
    if (n->cls == C_INKWORD)
        return ROLE_INK;
    const tok *p = t - 1;
    while (p > t - BEHIND && (p->cls == C_SKIP || (p->cls == C_COLOUR && p->val == t->val)))
        p--;
    if (p->cls == C_ON)
        return ROLE_BG;
    if (p->cls == C_IN)
        return ROLE_INK;
    for (n = t + 1; n <= t + AHEAD; n++) {
        if (n->cls == C_DIGIT || n->cls == C_ONE || n->cls == C_NOUN)
            return ROLE_INK;
        if (n->cls != C_SIZE && n->cls != C_HANDWR && n->cls != C_HAND && n->cls != C_MID &&
            n->cls != C_SIZED && !(n->cls == C_COLOUR && n->val == t->val))
            break;
    }
    p = t - 1;
    while (p > t - BEHIND && (p->cls == C_SKIP || p->cls == C_OF || p->cls == C_IS))
        p--;
    return p->cls == C_BGWORD ? ROLE_BG : p->cls == C_INKWORD ? ROLE_INK : ROLE_NONE;
}

/* Reads token t (the centre of the window) into s. */
static void parse_step(pstate *s, const tok *t)
{
    bool pending = s->pending;
    s->pending = t->cls == C_VERB ||
                 (pending && (t->cls == C_TO || t->cls == C_SKIP || t->cls == C_SPEED));
    if (s->skip > 0) {
        s->skip--;
        return;
    }
    int v = t->val;
    switch (t->cls) {
    case C_DIGIT: set1(&s->digit, v); break;
    case C_ONE:
        /* not "no one", "this one", "one of the ..." ("one of small size" is 1) */
        if (t[-1].cls != C_NEG && !(t[1].cls == C_OF && (t[2].cls == C_SKIP || t[2].cls == C_NEG)))
            set1(&s->one, 1);
        break;
    case C_COLOUR: {
        int role = colour_role(t);
        if (role == ROLE_INK)
            set1(&s->ink, v);
        else if (role == ROLE_BG)
            set1(&s->bg, v);
        else if (s->nunc < 4)
            s->unc[s->nunc++] = v;
        break;
    }
    case C_VPOS:
        if (t[-1].cls == C_ON && t[1].cls == C_OF)
            break;      /* "on top of" */
        set1(&s->v, v);
        s->pos_seen = true;
        break;
    case C_HPOS:
        if (pending)
            set1(&s->motion, v ? 1 : 0);
        else if (t[1].cls == C_HAND && t[2].cls != C_SIDE)
            break;      /* "a right hand", but "the right-hand side" is a place */
        else {
            set1(&s->h, v);
            s->pos_seen = true;
        }
        break;
    case C_CENTER: s->pos_seen = true; break;
    case C_SIZE: set1(&s->size, v); break;
    case C_MID:
        if (t[1].cls == C_SIZED)
            set1(&s->size, 1);
        break;
    case C_SPEED: set1(&s->speed, v); break;
    case C_SPEAKER: set1(&s->speaker, v); break;
    case C_MOTION: set1(&s->motion, v); break;
    case C_BARE:
        if (t[-1].cls == C_HOLD)
            break;      /* "holding up", "upside down", "close up" */
        if (v == 2 && t[1].cls == C_AND && t[2].cls == C_BARE && t[2].val == 3) {
            set1(&s->motion, 4);
            s->skip = 2;
        } else
            set1(&s->motion, v);
        break;
    case C_PHOTO: set1(&s->style, 1); break;
    case C_HAND:
        if (t[1].cls == C_HANDWR)
            set1(&s->style, 0);     /* hand-drawn, hand written */
        else if (t[-1].cls != C_HPOS)
            set1(&s->style, 1);
        break;
    case C_HANDWR: set1(&s->style, 0); break;
    default: break;
    }
}

void md_caption_parse(const char *text, int attr[MD_ATTR_COUNT])
{
    MD_ASSERT(attr);
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        attr[a] = -1;
    if (!text)
        return;
    const unsigned char *p = (const unsigned char *)text;
    tok win[WIN];
    for (int i = 0; i < WIN; i++)
        win[i] = i < BEHIND ? (tok){C_END, 0} : next_tok(&p);
    pstate s = {.digit = -1, .one = -1, .style = -1, .ink = -1, .bg = -1, .v = -1, .h = -1,
                .size = -1, .motion = -1, .speed = -1, .speaker = -1};
    while (win[BEHIND].cls != C_END) {
        parse_step(&s, win + BEHIND);
        memmove(win, win + 1, (WIN - 1) * sizeof win[0]);
        win[WIN - 1] = next_tok(&p);
    }
    for (int i = 0; i < s.nunc; i++) {
        int c = s.unc[i];
        if (c == s.ink || c == s.bg)
            continue;
        if (s.ink < 0)
            s.ink = c;
        else if (s.bg < 0)
            s.bg = c;
    }
    attr[MD_ATTR_DIGIT] = s.digit >= 0 ? s.digit : s.one;
    attr[MD_ATTR_STYLE] = s.style;
    attr[MD_ATTR_INK] = s.ink;
    attr[MD_ATTR_BG] = s.bg;
    if (s.pos_seen)
        attr[MD_ATTR_POS] = (s.v < 0 ? 1 : s.v) * 3 + (s.h < 0 ? 1 : s.h);
    attr[MD_ATTR_SIZE] = s.size;
    attr[MD_ATTR_MOTION] = s.motion;
    attr[MD_ATTR_SPEED] = s.speed;
    attr[MD_ATTR_SPEAKER] = s.speaker;
}

/* ---- generator ------------------------------------------------------------- */

static const char *const digit_words[10] = {
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};
static const char *const numerals[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
static const char *const speaker_names[6] = {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"};
static const int attr_classes[MD_ATTR_COUNT] = {10, 2, 8, 8, 9, 3, 5, 2, 6};
/* [0] is the plain name, drawn half the time; every synonym names only its
 * own colour ("jet" and "snow" are modifiers the parser skips). */
static const char *const colour_words[MD_COLOURS][3] = {
    {"black", "jet-black", "ebony"}, {"white", "snow-white", "ivory"},
    {"red", "crimson", "scarlet"},   {"green", "emerald", "emerald"},
    {"blue", "cobalt", "navy"},      {"yellow", "golden", "gold"},
    {"purple", "violet", "violet"},  {"orange", "tangerine", "orange"}};
static const char *const size_words[MD_SIZES][3] = {
    {"small", "tiny", "little"}, {"medium", "medium-sized", "mid-sized"}, {"large", "big", "huge"}};

enum { PHRASE = 112, POSTS = 8 };

typedef struct gen {
    uint64_t key, ctr;  /* counter RNG stream of this (sample, variant) */
    bool style_ok;      /* the caption should state the handwritten style */
    bool styled;        /* ... and a phrase already did */
} gen;

static uint32_t rnd(gen *g, uint32_t n) { return md_rand_u32_at(g->key, g->ctr++) % n; }
static bool chance(gen *g, uint32_t pct) { return rnd(g, 100) < pct; }
static const char *pick_(gen *g, const char *const *v, uint32_t n) { return v[rnd(g, n)]; }
#define PICK(g, ...)                                  \
    pick_((g), (const char *const[]){__VA_ARGS__},   \
          sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static void fmt(char *out, const char *f, ...) __attribute__((format(printf, 2, 3)));
static void fmt(char *out, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(out, PHRASE, f, ap);
    va_end(ap);
}

static const char *colour_word(gen *g, int c)
{
    return chance(g, 50) ? colour_words[c][0] : colour_words[c][1 + rnd(g, 2)];
}
static const char *digit_word(gen *g, int d) { return chance(g, 55) ? digit_words[d] : numerals[d]; }

/* "a" or "an" before w (by sound: "an 8", "an orange", but "a one"). */
static const char *article(const char *w)
{
    bool vowel = w[0] && strchr("aeio", w[0]) && strncmp(w, "one", 3) != 0;
    return vowel || w[0] == '8' ? "an" : "a";
}

/* A digit standing alone: "seven", "7", "the number 7", "the digit seven". */
static void digit_bare(gen *g, char *out, int d)
{
    uint32_t r = rnd(g, 100);
    if (r < 60)
        fmt(out, "%s", digit_word(g, d));
    else if (r < 95)
        fmt(out, "the %s %s", PICK(g, "number", "number", "digit"), digit_word(g, d));
    else
        fmt(out, "the numeral %s", numerals[d]);
}

/* [det] [size] [colour] [style] noun: "a small red 7", "the handwritten
 * digit seven". Any adjective may be NULL; det false drops the article. */
static void noun_phrase(gen *g, char *out, int d, const char *size, const char *colour,
                        const char *style, bool det)
{
    char body[PHRASE] = "";
    const char *adj[3] = {size, colour, style};
    bool any = false;
    for (int i = 0; i < 3; i++)
        if (adj[i]) {
            strcat(body, any ? " " : "");
            strcat(body, adj[i]);
            any = true;
        }
    uint32_t r = rnd(g, 100);
    bool noun = r >= 75;    /* "a red digit 7" rather than "a red 7" */
    strcat(body, any ? " " : "");
    strcat(body, !noun ? "" : r < 88 ? "digit " : "number ");
    strcat(body, digit_word(g, d));
    if (!det)
        fmt(out, "%s", body);
    else
        fmt(out, "%s %s", (noun && !any) || chance(g, 20) ? "the" : "a", body);
}

static void ink_phrase(gen *g, char *out, int c)
{
    const char *w = colour_word(g, c);
    if (g->style_ok && chance(g, 45)) {
        g->styled = true;
        fmt(out, PICK(g, "written in %s", "drawn in %s", "written in %s ink", "drawn in %s ink",
                      "handwritten in %s", "scribbled in %s", "drawn with %s ink"), w);
    } else
        fmt(out, PICK(g, "in %s", "in %s", "in %s ink", "with %s ink", "in %s strokes"), w);
}

static void bg_phrase(gen *g, char *out, int c, bool tag)
{
    const char *w = colour_word(g, c);
    if (tag)
        fmt(out, PICK(g, "on %s", "%s background", "against %s"), w);
    else
        fmt(out, PICK(g, "on %s", "on a %s background", "on a plain %s background", "against %s",
                      "against a %s background", "against a %s backdrop", "with a %s background",
                      "over a %s background", "on a solid %s background", "set against %s",
                      "on %s", "on a %s backdrop"), w);
}

/* Position p (0..8, row-major 3×3); tag: bare words for a comma list. */
static void pos_phrase(gen *g, char *out, int p, bool tag)
{
    int v = p / 3, h = p % 3;
    const char *hw = h == 0 ? "left" : "right";
    if (v != 1 && h != 1) {
        const char *vw = v == 0 ? PICK(g, "top", "top", "upper") : PICK(g, "bottom", "bottom", "lower");
        if (tag)
            fmt(out, PICK(g, "%s %s", "%s-%s", "%s %s corner", "%s-%s corner"), vw, hw);
        else
            fmt(out, PICK(g, "in the %s %s", "in the %s-%s", "in the %s %s corner", "in the %s-%s corner",
                          "at the %s %s", "near the %s %s corner", "tucked into the %s %s corner"), vw, hw);
    } else if (v != 1) {
        const char *vw = v == 0 ? "top" : "bottom";
        if (tag)
            fmt(out, PICK(g, "%s", "%s centre", "%s center", "%s middle"), vw);
        else if (chance(g, 15))
            fmt(out, "in the %s middle", v == 0 ? "upper" : "lower");
        else
            fmt(out, PICK(g, "at the %s", "near the %s", "along the %s edge", "at the %s centre",
                          "at the %s center", "in the %s middle", "at the %s"), vw);
    } else if (h != 1) {
        if (tag)
            fmt(out, PICK(g, "%s", "%s side", "middle %s"), hw);
        else
            fmt(out, PICK(g, "on the %s", "at the %s", "on the %s side", "near the %s edge",
                          "at the middle %s", "on the %s-hand side"), hw);
    } else if (tag)
        fmt(out, "%s", PICK(g, "center", "centre", "middle", "centered"));
    else
        fmt(out, "%s", PICK(g, "in the center", "in the centre", "in the middle", "centered", "centred",
                            "at the center", "in the middle of the frame", "in the centre of the image",
                            "dead centre"));
}

static void size_phrase(gen *g, char *out, int sz, bool tag)
{
    if (tag)
        fmt(out, "%s", size_words[sz][rnd(g, 3)]);
    else if (g->style_ok && sz != 1 && chance(g, 50)) {
        g->styled = true;
        fmt(out, "%s %s", PICK(g, "drawn", "written"),
            sz == 0 ? PICK(g, "small", "tiny") : PICK(g, "large", "big"));
    } else
        fmt(out, PICK(g, "at a %s size", "of %s size", "%s in size"),
            (const char *[]){"small", "medium", "large"}[sz]);
}

/* Motion m (-1: none) at speed sp (-1: none), not both -1. */
static void motion_phrase(gen *g, char *out, int m, int sp)
{
    static const char *const pre[2][3] = {{"slowly", "slowly", "slowly"},
                                          {"quickly", "rapidly", "swiftly"}};
    static const char *const post[2][6] = {
        {"slowly", "slowly", "at a slow pace", "at a leisurely pace", "at a slow speed", "slowly"},
        {"quickly", "fast", "rapidly", "swiftly", "at a fast pace", "at a quick pace"}};
    char mv[PHRASE];
    if (m < 0)
        fmt(mv, "%s", PICK(g, "moving", "drifting", "gliding", "travelling", "moving"));
    else if (m <= 1) {
        const char *verb = PICK(g, "moving", "sliding", "drifting", "going", "heading", "travelling",
                                "gliding", "scrolling", "moving");
        const char *dir = m == 0
            ? PICK(g, "left", "to the left", "leftward", "leftwards", "towards the left")
            : PICK(g, "right", "to the right", "rightward", "rightwards", "towards the right");
        if (sp >= 0 && chance(g, 20)) {
            fmt(out, "%s %s %s", verb, pre[sp][rnd(g, 3)], dir);   /* "moving slowly to the left" */
            return;
        }
        fmt(mv, "%s %s", verb, dir);
    } else if (m == 2)
        fmt(mv, "%s", PICK(g, "rising", "moving up", "drifting up", "floating up", "going up",
                           "moving upward", "climbing", "ascending", "drifting upwards", "sliding up"));
    else if (m == 3)
        fmt(mv, "%s", PICK(g, "falling", "sinking", "dropping", "moving down", "drifting down",
                           "going down", "moving downward", "descending", "sliding down", "falling down"));
    else
        fmt(mv, "%s", PICK(g, "bouncing", "bouncing up and down", "hopping up and down",
                           "bobbing up and down", "jumping up and down", "hopping", "bouncing around"));
    if (sp < 0)
        fmt(out, "%s", mv);
    else if (m >= 0 && chance(g, 25))
        fmt(out, "%s %s", pre[sp][rnd(g, 3)], mv);
    else
        fmt(out, "%s %s", mv, post[sp][rnd(g, 6)]);
}

/* The soundtrack's voice in a video: "as theo says seven"; spk -1: a voice
 * with no name, or nothing (out empty). */
static void voice_phrase(gen *g, char *out, int spk, int d)
{
    const char *dw = digit_word(g, d);
    out[0] = '\0';
    if (spk < 0) {
        if (chance(g, 20))
            fmt(out, PICK(g, "as someone says %s", "while a voice says %s", "with a voice saying %s",
                          "to the sound of someone saying %s"), dw);
        return;
    }
    const char *n = speaker_names[spk];
    if (chance(g, 70))
        fmt(out, PICK(g, "as %s says %s", "while %s says %s", "with %s saying %s",
                      "to the sound of %s saying %s", "as %s reads out %s"), n, dw);
    else
        fmt(out, PICK(g, "voiced by %s", "narrated by %s", "with %s's voice", "with the voice of %s"), n);
}

typedef struct sbuf { char s[4 * MD_CAPTION_MAX]; size_t n; } sbuf;

/* Appends w, after sep unless b is empty; the buffer holds any caption the
 * templates can make several times over, so this never truncates. */
static void add(sbuf *b, const char *sep, const char *w)
{
    if (!w || !w[0])
        return;
    int k = snprintf(b->s + b->n, sizeof b->s - b->n, "%s%s", b->n ? sep : "", w);
    b->n = MD_MIN(b->n + (size_t)MD_MAX(k, 0), sizeof b->s - 1);
}

/* "a" becomes "an" before a vowel sound ("an orange 7", "an 8"): templates
 * write "a" and this pass, run once on the whole caption, fixes it. */
static void fix_articles(sbuf *b)
{
    for (size_t i = 0; i + 2 < b->n; i++)
        if ((i == 0 || b->s[i - 1] == ' ') && (b->s[i] | 32) == 'a' && b->s[i + 1] == ' ' &&
            article(b->s + i + 2)[1] == 'n' && b->n + 1 < sizeof b->s) {
            memmove(b->s + i + 2, b->s + i + 1, b->n - i);   /* NUL included */
            b->s[i + 1] = 'n';
            b->n++;
        }
}

static void shuffle(gen *g, char (*v)[PHRASE], int n)
{
    char t[PHRASE];
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rnd(g, (uint32_t)i + 1);
        memcpy(t, v[i], PHRASE);
        memcpy(v[i], v[j], PHRASE);
        memcpy(v[j], t, PHRASE);
    }
}

/* Share of the optional attributes each variant states (variant % 4). */
static const uint32_t keep_pct[4] = {100, 70, 45, 20};

/* A handwritten digit: an image, or a video (with motion, speed, voice). */
static void make_drawn(gen *g, const md_world_sample *s, int mode, sbuf *b, int st[MD_ATTR_COUNT])
{
    const int *a = s->attr;
    bool video = s->kind == MD_WORLD_VIDEO;
    int d = a[MD_ATTR_DIGIT];
    uint32_t k = keep_pct[mode];
    bool want[MD_ATTR_COUNT] = {false};
    for (int i = MD_ATTR_INK; i < MD_ATTR_COUNT; i++) {
        bool used = i == MD_ATTR_POS ? !video : i < MD_ATTR_MOTION || video;
        want[i] = used && a[i] >= 0 && chance(g, k);
    }
    g->style_ok = a[MD_ATTR_STYLE] == 0 && chance(g, mode == 0 ? 100 : k / 2);

    enum { T_STD, T_DIGIT_FIRST, T_PREFIX, T_BG_FIRST, T_TAGS } t;
    uint32_t r = rnd(g, 100);
    t = r < 50 ? T_STD : r < 65 ? T_DIGIT_FIRST : r < 80 ? T_PREFIX : r < 90 ? T_BG_FIRST : T_TAGS;
    if ((t == T_BG_FIRST && !want[MD_ATTR_BG]) || (t == T_TAGS && video))
        t = T_STD;
    bool tags = t == T_TAGS;

    char posts[POSTS][PHRASE], head[PHRASE] = "", np[PHRASE], voice[PHRASE] = "";
    int n = 0, lead[POSTS], nlead = 0;     /* posts that may open the caption */
    const char *ink_adj = NULL, *size_adj = NULL, *style_adj = NULL;
    if (want[MD_ATTR_INK]) {
        if (tags || (t != T_DIGIT_FIRST && chance(g, 55)))
            ink_adj = colour_word(g, a[MD_ATTR_INK]);
        else
            ink_phrase(g, posts[n++], a[MD_ATTR_INK]);
    }
    if (want[MD_ATTR_SIZE]) {
        if (!tags && t != T_DIGIT_FIRST && chance(g, 65))
            size_adj = size_words[a[MD_ATTR_SIZE]][rnd(g, 3)];
        else
            size_phrase(g, posts[n++], a[MD_ATTR_SIZE], tags);
    }
    if (want[MD_ATTR_BG]) {
        if (t == T_BG_FIRST)
            fmt(head, PICK(g, "a %s background with", "on a %s background,", "against %s,",
                           "a plain %s backdrop with"), colour_word(g, a[MD_ATTR_BG]));
        else {
            lead[nlead++] = n;
            bg_phrase(g, posts[n++], a[MD_ATTR_BG], tags);
        }
    }
    if (want[MD_ATTR_POS]) {
        lead[nlead++] = n;
        pos_phrase(g, posts[n++], a[MD_ATTR_POS], tags);
    }
    if (want[MD_ATTR_MOTION] || want[MD_ATTR_SPEED]) {
        lead[nlead++] = n;
        motion_phrase(g, posts[n++], want[MD_ATTR_MOTION] ? a[MD_ATTR_MOTION] : -1,
                      want[MD_ATTR_SPEED] ? a[MD_ATTR_SPEED] : -1);
    }
    if (g->style_ok && !g->styled) {
        if (tags || t == T_DIGIT_FIRST)
            fmt(posts[n++], "handwritten");
        else if (t == T_STD && !video && chance(g, 35))
            fmt(head, "a drawing of");
        else
            style_adj = PICK(g, "handwritten", "handwritten", "hand-drawn", "hand-written");
        g->styled = true;
    }
    if (t == T_PREFIX && nlead == 0)
        t = T_STD;
    if (t == T_PREFIX) {
        /* a place, background or motion leads: "in the top left corner, a red 7" */
        int i = lead[rnd(g, (uint32_t)nlead)];
        fmt(head, "%s,", posts[i]);
        memmove(posts[i], posts[--n], PHRASE);
    }
    shuffle(g, posts, n);
    if (t == T_STD && !head[0] && chance(g, 25))
        fmt(head, "%s", video ? PICK(g, "a video of", "a clip of", "an animation of", "footage of",
                                     "a short clip of", "a 16-frame clip of", "a one-second video of",
                                     "a video showing")
                              : PICK(g, "an image of", "a picture of", "a 64x64 image of",
                                     "an image showing"));
    if (t == T_DIGIT_FIRST)
        digit_bare(g, np, d);
    else
        noun_phrase(g, np, d, size_adj, ink_adj, style_adj, !tags);
    if (video)
        voice_phrase(g, voice, want[MD_ATTR_SPEAKER] ? a[MD_ATTR_SPEAKER] : -1, d);

    add(b, " ", head);
    add(b, " ", np);
    const char *sep = tags || chance(g, n >= 3 ? 70 : 35) ? ", " : " ";
    for (int i = 0; i < n; i++)
        add(b, i == 0 && t == T_DIGIT_FIRST && chance(g, 70) ? ", " : sep, posts[i]);
    add(b, chance(g, 60) ? ", " : " ", voice);

    st[MD_ATTR_STYLE] = g->styled ? 0 : -1;
    for (int i = MD_ATTR_INK; i < MD_ATTR_COUNT; i++)
        st[i] = want[i] ? a[i] : -1;
}

/* A photo of a hand signing the digit. */
static void make_photo(gen *g, const md_world_sample *s, int mode, sbuf *b, int st[MD_ATTR_COUNT])
{
    static const uint32_t keep[4] = {100, 90, 75, 50};
    int d = s->attr[MD_ATTR_DIGIT];
    char dw[PHRASE], out[PHRASE];
    digit_bare(g, dw, d);
    if (chance(g, keep[mode])) {
        fmt(out, PICK(g, "a photo of a hand showing %s", "sign language for %s", "a hand signing %s",
                      "a photograph of the sign for %s", "the sign for %s", "a hand making the sign for %s",
                      "%s in sign language", "a photo of %s in sign language", "a hand sign for %s",
                      "a hand gesture for %s", "a photo of fingers showing %s", "%s, signed by a hand",
                      "a picture of a hand signing %s", "a photo of someone signing %s",
                      "the hand sign for %s, photographed", "a photo of a hand signing %s"), dw);
        st[MD_ATTR_STYLE] = 1;
    } else
        fmt(out, PICK(g, "%s", "a picture of %s", "an image of %s", "%s"), dw);
    add(b, "", out);
}

/* The digit spoken by an FSDD voice. */
static void make_audio(gen *g, const md_world_sample *s, int mode, sbuf *b, int st[MD_ATTR_COUNT])
{
    static const uint32_t keep[4] = {100, 75, 50, 30};
    int d = s->attr[MD_ATTR_DIGIT], spk = s->attr[MD_ATTR_SPEAKER];
    char dw[PHRASE], out[PHRASE];
    uint32_t r = rnd(g, 100);
    if (r < 12)
        fmt(dw, "the word %s", digit_words[d]);
    else if (r < 17)
        fmt(dw, "\"%s\"", digit_words[d]);
    else
        digit_bare(g, dw, d);
    if (spk >= 0 && chance(g, keep[mode])) {
        const char *n = speaker_names[spk];
        if (chance(g, 60))
            fmt(out, PICK(g, "%s says %s", "%s saying %s", "%s pronouncing %s",
                          "a recording of %s saying %s", "%s's voice saying %s",
                          "the voice of %s saying %s", "%s reading out %s", "%s speaking %s",
                          "an audio clip of %s saying %s"), n, dw);
        else
            fmt(out, PICK(g, "%s spoken by %s", "%s, spoken by %s", "%s, as said by %s", "%s said by %s",
                          "%s, in the voice of %s", "%s, pronounced by %s"), dw, n);
        st[MD_ATTR_SPEAKER] = spk;
    } else
        fmt(out, PICK(g, "someone saying %s", "someone says %s", "a voice says %s", "a voice saying %s",
                      "a man pronouncing %s", "a man saying %s", "a person saying %s", "%s, spoken aloud",
                      "%s, said out loud", "a recording of someone saying %s",
                      "the sound of someone saying %s", "%s spoken aloud",
                      "an audio clip of a man saying %s",
                      "a voice pronouncing %s"), dw);
    add(b, "", out);
}

md_status md_caption_make(const md_world_sample *s, int variant, char *buf, size_t cap,
                          int stated[MD_ATTR_COUNT])
{
    int st[MD_ATTR_COUNT];
    for (int i = 0; i < MD_ATTR_COUNT; i++)
        st[i] = -1;
    if (stated)
        memcpy(stated, st, sizeof st);
    if (buf && cap)
        buf[0] = '\0';
    if (!s || !buf || cap < 64 || variant < 0 || (unsigned)s->kind > MD_WORLD_VIDEO) {
        md_log(MD_LOG_ERROR, "md_caption_make: needs a sample of a known kind, a buffer of >= 64 bytes "
                             "(got %zu) and a variant >= 0 (got %d)", cap, variant);
        return MD_ERR_INVALID;
    }
    for (int i = 0; i < MD_ATTR_COUNT; i++)
        if (s->attr[i] < -1 || s->attr[i] >= attr_classes[i] || (i == MD_ATTR_DIGIT && s->attr[i] < 0)) {
            md_log(MD_LOG_ERROR, "md_caption_make: attribute %d is %d, outside -1..%d "
                   "(the digit is required)", i, s->attr[i], attr_classes[i] - 1);
            return MD_ERR_INVALID;
        }

    gen g = {.key = md_hash64(md_hash64(md_hash64(s->seed ^ 0x63617074696f6e00ull) + (uint64_t)s->index) +
                              ((uint64_t)s->kind << 32 | (uint32_t)variant))};
    int mode = variant % MD_CAPTIONS_PER_SAMPLE;
    sbuf b = {.n = 0};
    b.s[0] = '\0';
    st[MD_ATTR_DIGIT] = s->attr[MD_ATTR_DIGIT];
    if (s->kind == MD_WORLD_AUDIO)
        make_audio(&g, s, mode, &b, st);
    else if (s->kind == MD_WORLD_IMAGE && s->attr[MD_ATTR_STYLE] == 1)
        make_photo(&g, s, mode, &b, st);
    else
        make_drawn(&g, s, mode, &b, st);
    fix_articles(&b);
    if (chance(&g, 12))
        b.s[0] = (char)(b.s[0] - 32 * (b.s[0] >= 'a' && b.s[0] <= 'z'));
    if (chance(&g, 12))
        add(&b, "", ".");

    if (b.n + 1 > cap || b.n + 1 > MD_CAPTION_MAX) {
        md_log(MD_LOG_ERROR, "md_caption_make: the caption needs %zu bytes, the buffer holds %zu",
               b.n + 1, cap);
        return MD_ERR_INVALID;
    }
    memcpy(buf, b.s, b.n + 1);
    if (stated)
        memcpy(stated, st, sizeof st);
    return MD_OK;
}

md_status md_caption_digit(md_world_kind k, int d, uint64_t key, char *buf, size_t cap)
{
    md_world_sample s;
    memset(&s, 0, sizeof s);
    s.kind = k;
    s.seed = key;
    s.index = d;
    for (int a = 0; a < MD_ATTR_COUNT; a++)
        s.attr[a] = -1;
    s.attr[MD_ATTR_DIGIT] = d;
    s.src_image = s.src_audio = -1;
    return md_caption_make(&s, (int)(key % 1000), buf, cap, NULL);
}
