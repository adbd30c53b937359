/* cffi declarations: the capture pump (csrc/pump_api.h). */

#define OS_PUMP_SINK_DISCARD ...
#define OS_PUMP_SINK_MEMORY ...
#define OS_PUMP_SINK_PATH ...
#define OS_PUMP_SOURCE_PIPE ...
#define OS_PUMP_MAX_STREAMS ...

#define OS_PUMP_PART_NONE ...
#define OS_PUMP_PART_SINK ...

typedef struct os_pump_capture os_pump_capture;

typedef struct os_pump_stream_spec {
    int src_fd;
    int sink_fd;
    const char *sink_path;
    int pipe_w;
    int tee_fd;
    const struct os_pattern_set *patterns;
    const uint8_t *replacement;
    size_t replacement_len;
    size_t max_hold;
    int failed_part;
} os_pump_stream_spec;

typedef struct os_pump_stream_stats {
    uint64_t bytes_read;
    uint64_t bytes_written;
    uint64_t bytes_teed;
    int error;
    int stage;
} os_pump_stream_stats;

int os_pump_notify_fd(void);
size_t os_pump_take_done(uint64_t *ids, size_t max);
size_t os_pump_done_pending(void);
size_t os_pump_active_captures(void);

int os_pump_capture_start(os_pump_stream_spec *specs, size_t n, uint64_t *id,
                          os_pump_capture **out);
int os_pump_capture_abort(os_pump_capture *c);
void os_pump_capture_truncate(os_pump_capture *c);
void os_pump_capture_watch_child(os_pump_capture *c, int pid);
void os_pump_capture_child_exit(os_pump_capture *c, int killed);
int os_pump_capture_done(os_pump_capture *c);
int os_pump_capture_wait(os_pump_capture *c, int64_t timeout_ms);
int os_pump_capture_stats_all(os_pump_capture *c, os_pump_stream_stats *out);
int os_pump_capture_memory(os_pump_capture *c, size_t i, const uint8_t **data, size_t *len);
void os_pump_capture_release(os_pump_capture *c);
const char *os_pump_stage_name(int stage);
const char *os_pump_part_name(int part);
