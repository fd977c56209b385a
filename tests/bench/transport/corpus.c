/*
 * corpus.c - the Jetson metrics and CV-application log generator (see corpus.h).
 *
 * The numbers are modelled on an Orin Nano running a 30 fps detector: 6 cores at 100 jiffies/s,
 * DVFS frequency steps, thermal zones at 31.25 m°C resolution that follow load with lag, 8 GB of
 * memory, an eMMC root, an LTE modem uplink and an Ethernet camera. The point is not physics but
 * the statistical shape a codec sees: slow drifts, integer quantisation, monotonic counters with
 * noisy rates, decimals with two digits, and repeated text with changing numbers.
 */
#include "corpus.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"

struct rng {
    uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

/* uniform in [0, 1) */
static double unif(struct rng *r)
{
    return (double)(rnd(r) >> 11) / 9007199254740992.0;
}

/* roughly normal, mean 0, sd 1 */
static double gauss(struct rng *r)
{
    return (unif(r) + unif(r) + unif(r) + unif(r) - 2.0) * 1.7320508;
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

#define HOST "orin-nano-0042"
#define N_CORES 6

struct state {
    double load; /* 0..1, the pipeline's CPU load, slowly varying */
    uint64_t jiff[N_CORES][7];
    int freq_idx[N_CORES];
    double temp[6]; /* milli-degrees */
    double mem_avail_kb, cached_kb, buffers_kb;
    uint64_t disk_used, reads, writes, read_bytes, write_bytes, io_ms;
    uint64_t net[2][8];
    double gpu_load;
    double power[3];
    uint64_t dropped, uptime_s;
    double load1, load5, load15;
};

static const int freqs_khz[] = {729600, 1036800, 1190400, 1420800, 1510400};
static const char *const zones[6] = {"cpu-thermal", "gpu-thermal",  "cv0-thermal",
                                     "cv1-thermal", "soc0-thermal", "tj-thermal"};
static const char *const rails[3] = {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"};

static void init_state(struct state *st, struct rng *r)
{
    memset(st, 0, sizeof *st);
    st->load = 0.4;
    for (int c = 0; c < N_CORES; c++) {
        for (int k = 0; k < 7; k++)
            st->jiff[c][k] = 100000 + rnd(r) % 1000000;
        st->freq_idx[c] = 3;
    }
    for (int z = 0; z < 6; z++)
        st->temp[z] = 42000 + 1500 * z;
    st->mem_avail_kb = 4200000;
    st->cached_kb = 1800000;
    st->buffers_kb = 90000;
    st->disk_used = 12884901888ull;
    st->reads = 182733;
    st->writes = 918271;
    st->read_bytes = 4823449600ull;
    st->write_bytes = 19327352832ull;
    st->io_ms = 8172634;
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 8; k++)
            st->net[i][k] = k < 4 ? 1000000 + rnd(r) % 100000000 : rnd(r) % 20;
    st->gpu_load = 50;
    st->power[0] = 7200;
    st->power[1] = 2900;
    st->power[2] = 1500;
    st->uptime_s = 86400 * 3 + 1234;
    st->load1 = st->load5 = st->load15 = 2.4;
}

int corpus_metrics(struct ferry_buf *o, int64_t start_ns, unsigned seconds, uint64_t seed)
{
    struct rng r = {seed * 2654435761u + 1};
    struct state st;
    init_state(&st, &r);
    int ok = 1;
    for (unsigned s = 0; s < seconds && ok; s++) {
        /* one collection round: one timestamp, taken with a little scheduling jitter */
        int64_t ts = start_ns + (int64_t)s * 1000000000ll + (int64_t)(rnd(&r) % 3000000);
        st.load = clampd(st.load + 0.02 * gauss(&r) + 0.01 * (0.45 - st.load), 0.05, 0.98);
        for (int c = 0; c < N_CORES; c++) {
            double l = clampd(st.load + 0.08 * gauss(&r), 0.0, 1.0);
            unsigned busy = (unsigned)(l * 100.0 + 0.5);
            unsigned sys = busy / 5, user = busy - sys;
            unsigned iow = rnd(&r) % 50 == 0 ? (unsigned)(rnd(&r) % 4) : 0;
            unsigned irq = rnd(&r) % 3 == 0 ? 1 : 0, soft = (unsigned)(rnd(&r) % 2);
            unsigned idle = 100 > busy + iow + irq + soft ? 100 - busy - iow - irq - soft : 0;
            unsigned add[7] = {user, 0, sys, idle, iow, irq, soft};
            for (int k = 0; k < 7; k++)
                st.jiff[c][k] += add[k];
            if (rnd(&r) % 20 == 0) {
                int want = st.load > 0.6 ? 4 : st.load > 0.3 ? 3 : 1;
                st.freq_idx[c] += want > st.freq_idx[c] ? 1 : want < st.freq_idx[c] ? -1 : 0;
            }
            ok &= ferry_buf_printf(
                      o,
                      "cpu,host=" HOST ",cpu=cpu%d user=%lluu,nice=%lluu,system=%lluu,"
                      "idle=%lluu,iowait=%lluu,irq=%lluu,softirq=%lluu,freq_khz=%di "
                      "%lld\n",
                      c, (unsigned long long)st.jiff[c][0], (unsigned long long)st.jiff[c][1],
                      (unsigned long long)st.jiff[c][2], (unsigned long long)st.jiff[c][3],
                      (unsigned long long)st.jiff[c][4], (unsigned long long)st.jiff[c][5],
                      (unsigned long long)st.jiff[c][6], freqs_khz[st.freq_idx[c]],
                      (long long)ts) == 0;
        }
        for (int z = 0; z < 6; z++) {
            double target = 41000 + 1200 * z + 22000 * st.load;
            st.temp[z] += 0.02 * (target - st.temp[z]) + 40 * gauss(&r);
            long mc = (long)(st.temp[z] / 31.25) * 3125 / 100;
            ok &= ferry_buf_printf(o, "thermal,host=" HOST ",zone=%s temp=%ldi %lld\n", zones[z],
                                   mc, (long long)ts) == 0;
        }
        st.mem_avail_kb = clampd(st.mem_avail_kb + 800 * gauss(&r), 3000000, 6000000);
        st.cached_kb = clampd(st.cached_kb + 120 * gauss(&r) + 4, 1000000, 3000000);
        st.buffers_kb += rnd(&r) % 4 == 0 ? 4 : 0;
        unsigned long long avail = (unsigned long long)st.mem_avail_kb / 4 * 4;
        ok &= ferry_buf_printf(o,
                               "mem,host=" HOST " total_kb=7816908u,available_kb=%lluu,"
                               "free_kb=%lluu,buffers_kb=%lluu,cached_kb=%lluu,"
                               "swap_free_kb=3908452u %lld\n",
                               avail, avail - (unsigned long long)st.cached_kb + 10000,
                               (unsigned long long)st.buffers_kb,
                               (unsigned long long)st.cached_kb / 4 * 4, (long long)ts) == 0;
        uint64_t wr = rnd(&r) % 6, rd = rnd(&r) % 10 == 0 ? 1 + rnd(&r) % 3 : 0;
        st.writes += wr;
        st.reads += rd;
        st.write_bytes += wr * 4096 * (1 + rnd(&r) % 8);
        st.read_bytes += rd * 4096 * (1 + rnd(&r) % 32);
        st.io_ms += wr + rd * 2;
        st.disk_used += wr * 4096;
        ok &=
            ferry_buf_printf(o,
                             "disk,host=" HOST ",device=mmcblk0p1,path=/ used_bytes=%lluu,"
                             "free_bytes=%lluu,total_bytes=62277025792u %lld\n",
                             (unsigned long long)st.disk_used,
                             62277025792ull - (unsigned long long)st.disk_used, (long long)ts) == 0;
        ok &=
            ferry_buf_printf(o,
                             "diskio,host=" HOST ",device=mmcblk0 reads=%lluu,writes=%lluu,"
                             "read_bytes=%lluu,write_bytes=%lluu,io_time_ms=%lluu %lld\n",
                             (unsigned long long)st.reads, (unsigned long long)st.writes,
                             (unsigned long long)st.read_bytes, (unsigned long long)st.write_bytes,
                             (unsigned long long)st.io_ms, (long long)ts) == 0;
        static const char *const ifs[2] = {"wwan0", "eth0"};
        for (int i = 0; i < 2; i++) {
            /* wwan0: the uplink, bursty and small; eth0: the camera's RTSP stream, ~4 Mbit/s */
            uint64_t rx = i ? 480000 + (uint64_t)(20000 * clampd(gauss(&r), -3, 3) + 60000)
                            : (rnd(&r) % 5 == 0 ? 200 + rnd(&r) % 4000 : 0);
            uint64_t tx = i ? 1800 + rnd(&r) % 400 : (rnd(&r) % 5 == 0 ? 500 + rnd(&r) % 20000 : 0);
            st.net[i][0] += rx;
            st.net[i][1] += tx;
            st.net[i][2] += rx / 1400 + (rx ? 1 : 0);
            st.net[i][3] += tx / 1400 + (tx ? 1 : 0);
            if (rnd(&r) % 3000 == 0)
                st.net[i][6]++;
            ok &=
                ferry_buf_printf(o,
                                 "net,host=" HOST ",interface=%s bytes_recv=%lluu,"
                                 "bytes_sent=%lluu,packets_recv=%lluu,packets_sent=%lluu,"
                                 "err_in=%lluu,err_out=%lluu,drop_in=%lluu,drop_out=%lluu "
                                 "%lld\n",
                                 ifs[i], (unsigned long long)st.net[i][0],
                                 (unsigned long long)st.net[i][1], (unsigned long long)st.net[i][2],
                                 (unsigned long long)st.net[i][3], (unsigned long long)st.net[i][4],
                                 (unsigned long long)st.net[i][5], (unsigned long long)st.net[i][6],
                                 (unsigned long long)st.net[i][7], (long long)ts) == 0;
        }
        st.gpu_load = clampd(st.gpu_load + 3 * gauss(&r) + 0.05 * (55 - st.gpu_load), 0, 99);
        int gpu_freq = st.gpu_load > 70 ? 624 : st.gpu_load > 40 ? 510 : 306;
        ok &= ferry_buf_printf(
                  o, "gpu,host=" HOST ",name=ga10b load=%di,freq_mhz=%di,emc_load=%di %lld\n",
                  (int)st.gpu_load, gpu_freq, (int)(st.gpu_load * 0.4 + 5), (long long)ts) == 0;
        for (int k = 0; k < 3; k++) {
            double base = k == 0 ? 5200 + 4000 * st.load : k == 1 ? 1200 + 3500 * st.load : 1500;
            st.power[k] = 0.7 * st.power[k] + 0.3 * base + 60 * gauss(&r);
            ok &=
                ferry_buf_printf(o, "power,host=" HOST ",rail=%s current_mw=%di,avg_mw=%di %lld\n",
                                 rails[k], (int)(st.power[k] + 0.5 * 60 * gauss(&r)),
                                 (int)st.power[k], (long long)ts) == 0;
        }
        double infer = clampd(11.5 + 9 * st.load + 1.2 * gauss(&r), 6, 60);
        double fps = clampd(30.0 - (infer > 33 ? (infer - 33) * 0.8 : 0) - 0.03 * unif(&r), 5, 30);
        if (infer > 30 && rnd(&r) % 2)
            st.dropped++;
        /* the application pushes its own metrics over the local socket, ms timestamps */
        int64_t app_ts = (ts / 1000000 + 7) * 1000000;
        ok &= ferry_buf_printf(o,
                               "model,host=" HOST ",name=yolov8n,engine=trt-fp16 fps=%.2f,"
                               "inference_ms=%.2f,preprocess_ms=%.2f,postprocess_ms=%.2f,"
                               "detections=%di,dropped_frames=%lluu %lld\n",
                               fps, infer, clampd(2.1 + 0.2 * gauss(&r), 1.5, 4),
                               clampd(1.05 + 0.1 * gauss(&r), 0.5, 3), (int)(rnd(&r) % 9),
                               (unsigned long long)st.dropped, (long long)app_ts) == 0;
        st.uptime_s++;
        double inst = st.load * 6 + 0.3 * gauss(&r);
        st.load1 += (inst - st.load1) / 60;
        st.load5 += (inst - st.load5) / 300;
        st.load15 += (inst - st.load15) / 900;
        ok &= ferry_buf_printf(o,
                               "system,host=" HOST " uptime_s=%lluu,load1=%.2f,load5=%.2f,"
                               "load15=%.2f,n_procs=%di %lld\n",
                               (unsigned long long)st.uptime_s, st.load1, st.load5, st.load15,
                               280 + (int)(rnd(&r) % 5), (long long)ts) == 0;
    }
    return ok ? 0 : -1;
}

/* ---- logs --------------------------------------------------------------------------------- */

static int log_line(struct ferry_buf *o, int64_t ts_ns, const char *level, const char *module,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int log_line(struct ferry_buf *o, int64_t ts_ns, const char *level, const char *module,
                    const char *fmt, ...)
{
    char stamp[32], msg[512];
    time_t secs = (time_t)(ts_ns / 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ferry_buf_printf(o, "%s.%03dZ %s %s: %s\n", stamp, (int)(ts_ns / 1000000 % 1000), level,
                            module, msg);
}

int corpus_logs(struct ferry_buf *o, int64_t start_ns, unsigned seconds, uint64_t seed)
{
    struct rng r = {seed * 11400714819323198485ull + 7};
    static const char *const funcs[] = {"nvinfer1::rt::cuda::enqueue",
                                        "nvinfer1::rt::ExecutionContext::enqueueV3",
                                        "Detector::infer",
                                        "Pipeline::process_frame",
                                        "Pipeline::run",
                                        "std::thread::_State_impl::_M_run",
                                        "start_thread",
                                        "clone3"};
    static const char *const files[] = {"trt_runtime.cpp",  "context.cpp",  "detector.cpp",
                                        "pipeline.cpp",     "pipeline.cpp", "thread.cc",
                                        "pthread_create.c", "clone3.S"};
    uint64_t frame = 184467;
    unsigned tracks = 5, restarts = 0;
    uint64_t published = 0, sent_bytes = 0;
    double load = 0.4;
    int ok = 1;
    int64_t frames_total = (int64_t)seconds * 30;
    for (int64_t f = 0; f < frames_total && ok; f++) {
        int64_t ts = start_ns + f * 33333333 + (int64_t)(rnd(&r) % 4000000);
        load = clampd(load + 0.01 * gauss(&r) + 0.002 * (0.45 - load), 0.05, 0.98);
        double infer = clampd(11.5 + 9 * load + 1.5 * gauss(&r), 6, 80);
        frame++;
        if (infer > 27 && rnd(&r) % 3 == 0) {
            ok &= log_line(o, ts, "WARN", "detector",
                           "frame %llu dropped: inference queue full (depth=%u, latency %.1f ms)",
                           (unsigned long long)frame, 4 + (unsigned)(rnd(&r) % 4), infer) == 0;
            continue;
        }
        unsigned objs = (unsigned)(rnd(&r) % 7);
        ok &= log_line(o, ts + 2000000, "INFO", "detector", "frame %llu: %u objects in %.1f ms",
                       (unsigned long long)frame, objs, infer) == 0;
        if (f % 5 == 0) {
            unsigned nw = (unsigned)(rnd(&r) % 3), lost = (unsigned)(rnd(&r) % 3);
            tracks = tracks + nw > lost ? tracks + nw - lost : 0;
            ok &= log_line(o, ts + 3000000, "DEBUG", "tracker",
                           "tracks: %u active, %u new, %u lost (frame %llu)", tracks, nw, lost,
                           (unsigned long long)frame) == 0;
        }
        if (f % 30 == 0) {
            unsigned n = 1 + (unsigned)(rnd(&r) % 6);
            unsigned bytes = n * (310 + (unsigned)(rnd(&r) % 40));
            published += n;
            sent_bytes += bytes;
            ok &= log_line(o, ts + 5000000, "INFO", "publisher",
                           "published %u events (%u bytes) to mqtt://10.20.0.5:1883 in %u ms", n,
                           bytes, 20 + (unsigned)(rnd(&r) % 300)) == 0;
        }
        if (f % 300 == 0)
            ok &= log_line(o, ts + 1000000, "INFO", "camera",
                           "cam0 rtsp://192.168.1.64:554/stream1: %.2f fps, %llu frames, "
                           "bitrate %u kbit/s",
                           29.9 + 0.1 * unif(&r), (unsigned long long)frame,
                           3900 + (unsigned)(rnd(&r) % 300)) == 0;
        if (f % 900 == 0)
            ok &= log_line(o, ts + 1500000, "INFO", "watchdog",
                           "heartbeat ok: uptime %llus, rss %u kB, published %llu events "
                           "(%llu bytes)",
                           (unsigned long long)(f / 30 + 3600), 612000 + (unsigned)(rnd(&r) % 5000),
                           (unsigned long long)published, (unsigned long long)sent_bytes) == 0;
        if (rnd(&r) % 2000 == 0)
            ok &= log_line(o, ts + 800000, "WARN", "decoder",
                           "h264: corrupted macroblock %u, resync on next keyframe (pts %llu)",
                           (unsigned)(rnd(&r) % 3600),
                           (unsigned long long)(frame * 3000 + 90000)) == 0;
        if (rnd(&r) % 40000 == 0) {
            ok &= log_line(o, ts + 2500000, "ERROR", "detector",
                           "CUDA error 700 (an illegal memory access was encountered) at "
                           "detector.cpp:%u",
                           200 + (unsigned)(rnd(&r) % 50)) == 0;
            uint64_t addr = 0xffff8a000000ull + (rnd(&r) % 0x100000) * 16;
            for (int k = 0; k < 8; k++)
                ok &= log_line(o, ts + 2500000, "ERROR", "detector",
                               "    #%d 0x%012llx in %s at %s:%u", k,
                               (unsigned long long)(addr + (uint64_t)k * 0x1a40), funcs[k],
                               files[k], 40 + (unsigned)k * 37) == 0;
            ok &= log_line(o, ts + 90000000, "WARN", "pipeline",
                           "restarting inference engine (attempt %u)", ++restarts) == 0;
        }
    }
    return ok ? 0 : -1;
}
