/* redact.c: placeholder until the PCRE2 engine lands. Compiling a pattern set
 * fails with ENOSYS, so no redactor can be made and nothing runs unredacted. */
#include <errno.h>
#include <string.h>

#include "redact_api.h"

int os_pattern_set_new(const char *const *patterns, const size_t *pattern_lens,
                       size_t n_patterns, const char *const *literals,
                       const size_t *literal_lens, size_t n_literals,
                       uint32_t flags, os_pattern_set **out, size_t *err_index,
                       size_t *err_offset, char *err_msg, size_t err_msg_len) {
    *out = NULL;
    return -ENOSYS;
}
void os_pattern_set_free(os_pattern_set *set) {}
os_redactor *os_redactor_new(const os_pattern_set *set, const uint8_t *replacement,
                             size_t replacement_len, size_t max_hold) {
    return NULL;
}
void os_redactor_free(os_redactor *r) {}
int os_redactor_feed(os_redactor *r, const uint8_t *data, size_t len) { return -ENOSYS; }
int os_redactor_finish(os_redactor *r) { return -ENOSYS; }
const uint8_t *os_redactor_output(os_redactor *r, size_t *len) {
    *len = 0;
    return NULL;
}
void os_redactor_consume(os_redactor *r, size_t n) {}
