/* cffi declarations: the probes of `orchestrator-spawn doctor` (csrc/doctor_api.h). */

int os_doctor_pidfd_open(void);
int os_doctor_close_range(void);
int os_doctor_clone_pidfd(void);
int os_doctor_pcre2_version(char *buf, size_t len);
int os_doctor_pcre2_jit_built(void);
int os_doctor_pcre2_jit_works(void);
int os_doctor_pcre2_jit_target(char *buf, size_t len);
