/* cffi declarations: the redaction engine (csrc/redact_api.h). */

#define OS_REDACT_IGNORE_CASE ...
#define OS_REDACT_E_COMPILE ...
#define OS_REDACT_E_EMPTY_MATCH ...

typedef struct os_pattern_set os_pattern_set;
typedef struct os_redactor os_redactor;

int os_pattern_set_new(const char *const *patterns, const size_t *pattern_lens,
                       size_t n_patterns, const char *const *literals,
                       const size_t *literal_lens, size_t n_literals,
                       uint32_t flags, os_pattern_set **out, size_t *err_index,
                       size_t *err_offset, char *err_msg, size_t err_msg_len);
void os_pattern_set_free(os_pattern_set *set);
int os_pattern_set_anchor_ex(const os_pattern_set *set, size_t index, int32_t *dmin,
                             int32_t *dmax, int *rel_end);
const char *os_pattern_set_scanner(const os_pattern_set *set);

os_redactor *os_redactor_new(const os_pattern_set *set,
                             const uint8_t *replacement, size_t replacement_len,
                             size_t max_hold);
void os_redactor_free(os_redactor *r);
int os_redactor_feed(os_redactor *r, const uint8_t *data, size_t len);
int os_redactor_finish(os_redactor *r);
int os_redactor_abort(os_redactor *r);
const uint8_t *os_redactor_output(os_redactor *r, size_t *len);
void os_redactor_consume(os_redactor *r, size_t n);
size_t os_redactor_held(const os_redactor *r);
int os_redactor_plan(os_redactor *r, const uint8_t *data, size_t len, size_t *out_len);
void os_redactor_write_plan(os_redactor *r, const uint8_t *data, uint8_t *out);
