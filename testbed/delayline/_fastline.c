/*
 * _fastline: the userspace delay line's packet loop in C.
 *
 * Speaks NFQUEUE over a raw netlink socket (no libnetfilter_queue/libmnl at
 * run time): binds every queue of one wire namespace on one socket with
 * NFQA_CFG_F_GSO (GSO packets reach userspace whole), a 64-byte copy range
 * (the whole packet when a queue corrupts), never F_FAIL_OPEN (a dead line
 * black-holes its link), reads many messages per recvmmsg, holds each
 * packet's verdict until its due time and sends verdicts in one sendmsg per
 * loop pass: a batch verdict (NFQNL_MSG_VERDICT_BATCH) for a released FIFO
 * prefix when nothing else still held has a lower id, single verdicts
 * otherwise.
 *
 * The statistical models are not here: Python (testbed.delayline.sampling)
 * pre-draws per-packet (delay_ns, flags, aux) into a single-producer
 * single-consumer ring per queue (Engine.push); the loop only consumes.
 * A queue with no randomness (no jitter, loss, corrupt, reorder) runs in
 * constant mode and needs no feed. Engine.reconfigure changes a queue's
 * mode, constant delay and GSO flag between run() calls (a profile change
 * at runtime); the feed ring is emptied so no draw of the old model is used.
 *
 * Semantics are those of testbed/delayline/line.py: loss decided at arrival
 * (drop verdict), FIFO release due = max(arrival + delay, previous due),
 * reorder packets skip the FIFO (a side heap by due time; the feeder gives
 * them delay 0, netem's reorder: sent at once), corrupt flips one
 * bit past the IP header. Arrival is the kernel timestamp when plausible
 * (0 <= age < 5 ms), else now, on CLOCK_MONOTONIC. Timing: ppoll (ns
 * resolution, timer slack 1 ns) until an adaptive lead before the next due
 * time, then spin. Lateness goes to the same log-spaced histogram as
 * testbed/delayline/latehist.py.
 *
 * The scheduling core (sched_*) is pure and exposed to Python as
 * _fastline.Scheduler for unit tests without a kernel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <math.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

#define FLAG_LOSE 1u
#define FLAG_CORRUPT 2u
#define FLAG_REORDER 4u

#define LATE_BINS 400               /* as latehist.BINS */
#define LATE_FIRST_EDGE_NS 1000.0   /* 1 us */
#define LATE_GROWTH 1.05
#define MAX_TS_AGE_NS 5000000LL     /* kernel timestamp plausible below 5 ms */
#define LEAD_MIN_NS 40000LL
/* The spin before a due time is capped low. Every line spins up to its lead
 * before each release, and a line under CPU contention wakes late, which grew
 * the lead, which spun more: a ring allreduce of 8 hosts at scale 16 (16 line
 * directions on 2 cores, ~1k packets/s each) left every line spinning, CPU
 * 87 % busy and lines 6.5-8.3 ms late (p99) with a 1 ms cap; 1.2 ms with a
 * 200 us cap; 0.84-0.88 ms and 62 % busy with this one (issue 13). */
#define LEAD_MAX_NS 100000LL
#define LEAD_MARGIN_NS 20000LL
#define IDLE_WAIT_NS 250000000LL
#define STARVE_WAIT_NS 50000000LL
#define MAX_RELEASE_PER_PASS 8192
#define READ_BATCH_MAX_NS 500000LL  /* see update_read_batch */
#define READ_BATCH_MIN_NS 50000LL
#define SENDBUF_BYTES (1 << 20)
#define HEADER_COPY_BYTES 64
#define INF_NS INT64_MAX

static inline int64_t clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* id a is after id b, modulo 2^32 (the kernel's nfq_id_after) */
static inline int id_after(uint32_t a, uint32_t b) { return (int32_t)(b - a) < 0; }

/* ------------------------------------------------------------------------ */
/* Lateness histogram: bins grow by 5 % from 1 us (latehist.py).            */

static int late_bin(int64_t late_ns)
{
    if ((double)late_ns < LATE_FIRST_EDGE_NS)
        return 0;
    int idx = 1 + (int)(log((double)late_ns / LATE_FIRST_EDGE_NS) / log(LATE_GROWTH));
    return idx > LATE_BINS ? LATE_BINS : idx;
}

/* ------------------------------------------------------------------------ */
/* Scheduling core: FIFO + side heap, release planning. Pure.               */

typedef struct {
    uint32_t id;
    int64_t due_ns;
    uint64_t seq;
    uint8_t *payload; /* corrupted copy to send with the verdict, or NULL */
    uint32_t payload_len;
} held_t;

typedef struct {
    held_t *fifo;
    size_t fifo_cap, fifo_head, fifo_len; /* ring, cap a power of two */
    held_t *side;
    size_t side_cap, side_len; /* min-heap by (due, seq) */
    int64_t last_due_ns;
    uint64_t seq;
    size_t held_max;
} sched_t;

enum { OP_SINGLE = 0, OP_BATCH = 1 };

typedef struct {
    int kind;
    uint32_t id;
    uint8_t *payload;
    uint32_t payload_len;
} vop_t;

static void sched_init(sched_t *s)
{
    memset(s, 0, sizeof(*s));
}

static void sched_free(sched_t *s)
{
    for (size_t i = 0; i < s->fifo_len; i++)
        free(s->fifo[(s->fifo_head + i) & (s->fifo_cap - 1)].payload);
    for (size_t i = 0; i < s->side_len; i++)
        free(s->side[i].payload);
    free(s->fifo);
    free(s->side);
    memset(s, 0, sizeof(*s));
}

static size_t sched_held(const sched_t *s) { return s->fifo_len + s->side_len; }

static int heap_less(const held_t *a, const held_t *b)
{
    return a->due_ns < b->due_ns || (a->due_ns == b->due_ns && a->seq < b->seq);
}

static int fifo_grow(sched_t *s)
{
    size_t cap = s->fifo_cap ? s->fifo_cap * 2 : 1024;
    held_t *n = malloc(cap * sizeof(held_t));
    if (!n)
        return -1;
    for (size_t i = 0; i < s->fifo_len; i++)
        n[i] = s->fifo[(s->fifo_head + i) & (s->fifo_cap - 1)];
    free(s->fifo);
    s->fifo = n;
    s->fifo_cap = cap;
    s->fifo_head = 0;
    return 0;
}

static int side_push(sched_t *s, held_t h)
{
    if (s->side_len == s->side_cap) {
        size_t cap = s->side_cap ? s->side_cap * 2 : 256;
        held_t *n = realloc(s->side, cap * sizeof(held_t));
        if (!n)
            return -1;
        s->side = n;
        s->side_cap = cap;
    }
    size_t i = s->side_len++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&h, &s->side[p]))
            break;
        s->side[i] = s->side[p];
        i = p;
    }
    s->side[i] = h;
    return 0;
}

static held_t side_pop(sched_t *s)
{
    held_t top = s->side[0];
    held_t last = s->side[--s->side_len];
    size_t i = 0, n = s->side_len;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const held_t *mv = &last;
        if (l < n && heap_less(&s->side[l], mv)) { m = l; mv = &s->side[l]; }
        if (r < n && heap_less(&s->side[r], mv)) { m = r; }
        if (m == i)
            break;
        s->side[i] = s->side[m];
        i = m;
    }
    if (n)
        s->side[i] = last;
    return top;
}

/* Hold packet `id`; returns its due time, or -1 when out of memory. */
static int64_t sched_arrive(sched_t *s, uint32_t id, int64_t arrival_ns, int64_t delay_ns,
                            int reorder, uint8_t *payload, uint32_t payload_len)
{
    held_t h = {id, arrival_ns + (delay_ns > 0 ? delay_ns : 0), ++s->seq, payload, payload_len};
    if (reorder) {
        if (side_push(s, h) < 0)
            return -1;
    } else {
        if (h.due_ns < s->last_due_ns)
            h.due_ns = s->last_due_ns;
        if (s->fifo_len == s->fifo_cap && fifo_grow(s) < 0)
            return -1;
        s->fifo[(s->fifo_head + s->fifo_len) & (s->fifo_cap - 1)] = h;
        s->fifo_len++;
        s->last_due_ns = h.due_ns;
    }
    size_t held = sched_held(s);
    if (held > s->held_max)
        s->held_max = held;
    return h.due_ns;
}

static int64_t sched_head_due(const sched_t *s)
{
    int64_t due = INF_NS;
    if (s->fifo_len)
        due = s->fifo[s->fifo_head].due_ns;
    if (s->side_len && s->side[0].due_ns < due)
        due = s->side[0].due_ns;
    return due;
}

/*
 * Pop everything due at `now_ns` (at most max_out packets) and plan the
 * verdicts: reordered (side) packets first as singles, then the FIFO part as
 * batch verdicts up to each run's last id, broken by single verdicts for
 * packets that carry a payload (so FIFO order is kept). Batches are only used
 * when no packet still held in the side heap has an id at or below the batch
 * id (a batch verdict accepts every queued id <= its id); otherwise every
 * FIFO packet gets a single verdict. Fills dues[] (for lateness) and ops[];
 * returns the number of packets released, *n_ops the number of verdicts.
 */
static size_t sched_release(sched_t *s, int64_t now_ns, size_t max_out, int64_t *dues,
                            vop_t *ops, size_t *n_ops)
{
    size_t n = 0, k = 0;
    while (s->side_len && s->side[0].due_ns <= now_ns && n < max_out) {
        held_t h = side_pop(s);
        dues[n++] = h.due_ns;
        ops[k++] = (vop_t){OP_SINGLE, h.id, h.payload, h.payload_len};
    }
    size_t fifo_first = n;
    size_t first_op = k;
    uint32_t last_id = 0;
    int any = 0, pending = 0;
    while (s->fifo_len && s->fifo[s->fifo_head].due_ns <= now_ns && n < max_out) {
        held_t h = s->fifo[s->fifo_head];
        s->fifo_head = (s->fifo_head + 1) & (s->fifo_cap - 1);
        s->fifo_len--;
        dues[n++] = h.due_ns;
        if (h.payload) {
            if (pending)
                ops[k++] = (vop_t){OP_BATCH, last_id, NULL, 0};
            pending = 0;
            ops[k++] = (vop_t){OP_SINGLE, h.id, h.payload, h.payload_len};
        } else {
            pending = 1;
        }
        last_id = h.id;
        any = 1;
    }
    if (pending)
        ops[k++] = (vop_t){OP_BATCH, last_id, NULL, 0};
    if (any && s->side_len) {
        int safe = 1;
        for (size_t i = 0; i < s->side_len; i++) {
            if (!id_after(s->side[i].id, last_id)) {
                safe = 0;
                break;
            }
        }
        if (!safe) {
            /* re-plan the FIFO part as singles, in order */
            k = first_op;
            /* the FIFO entries are gone from the ring, but still in memory
             * behind fifo_head: walk back over them */
            size_t cnt = n - fifo_first;
            size_t start = (s->fifo_head - cnt) & (s->fifo_cap - 1);
            for (size_t i = 0; i < cnt; i++) {
                held_t *h = &s->fifo[(start + i) & (s->fifo_cap - 1)];
                ops[k++] = (vop_t){OP_SINGLE, h->id, h->payload, h->payload_len};
            }
        }
    }
    *n_ops = k;
    return n;
}

/* Flip one bit past the IPv4 header, position from aux (as line.py). */
static void corrupt_bit(uint8_t *data, uint32_t len, uint32_t aux)
{
    if (!len)
        return;
    uint32_t ihl = (uint32_t)(data[0] & 0x0F) * 4;
    if (len <= ihl)
        return;
    uint32_t pos = ihl + (aux & 0xFFFFFFu) % (len - ihl);
    data[pos] ^= (uint8_t)(1u << (aux >> 29));
}

/* ------------------------------------------------------------------------ */
/* Netlink message building                                                  */

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} nlbuf_t;

static struct nlmsghdr *nl_begin(nlbuf_t *b, uint16_t type, uint16_t flags, uint16_t queue_num,
                                 uint32_t seq)
{
    struct nlmsghdr *nlh = (struct nlmsghdr *)(b->buf + b->len);
    memset(nlh, 0, NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg)));
    nlh->nlmsg_len = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
    nlh->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    nlh->nlmsg_seq = seq;
    struct nfgenmsg *g = (struct nfgenmsg *)NLMSG_DATA(nlh);
    g->nfgen_family = AF_UNSPEC;
    g->version = NFNETLINK_V0;
    g->res_id = htons(queue_num);
    return nlh;
}

static void nl_attr(struct nlmsghdr *nlh, uint16_t type, const void *data, size_t len)
{
    struct nlattr *a = (struct nlattr *)((uint8_t *)nlh + NLMSG_ALIGN(nlh->nlmsg_len));
    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + len);
    if (len)
        memcpy((uint8_t *)a + NLA_HDRLEN, data, len);
    size_t pad = NLA_ALIGN(a->nla_len) - a->nla_len;
    if (pad)
        memset((uint8_t *)a + a->nla_len, 0, pad);
    nlh->nlmsg_len = NLMSG_ALIGN(nlh->nlmsg_len) + NLA_ALIGN(a->nla_len);
}

static void nl_end(nlbuf_t *b, struct nlmsghdr *nlh) { b->len += NLMSG_ALIGN(nlh->nlmsg_len); }

static size_t verdict_size(uint32_t payload_len)
{
    return NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg)) +
           NLA_ALIGN(NLA_HDRLEN + sizeof(struct nfqnl_msg_verdict_hdr)) +
           (payload_len ? NLA_ALIGN(NLA_HDRLEN + payload_len) : 0);
}

static void put_verdict(nlbuf_t *b, uint16_t queue_num, int batch, uint32_t verdict, uint32_t id,
                        const uint8_t *payload, uint32_t payload_len)
{
    struct nlmsghdr *nlh = nl_begin(b, batch ? NFQNL_MSG_VERDICT_BATCH : NFQNL_MSG_VERDICT, 0,
                                    queue_num, 0);
    struct nfqnl_msg_verdict_hdr vh = {htonl(verdict), htonl(id)};
    nl_attr(nlh, NFQA_VERDICT_HDR, &vh, sizeof(vh));
    if (payload && payload_len)
        nl_attr(nlh, NFQA_PAYLOAD, payload, payload_len);
    nl_end(b, nlh);
}

/* ------------------------------------------------------------------------ */
/* Engine                                                                     */

typedef struct {
    uint16_t queue_num;
    uint32_t max_len;
    int gso;
    int copy_payload;
    int const_mode;
    int64_t const_delay_ns;
    sched_t s;
    /* model feed: SPSC ring, producer = Python (push), consumer = loop */
    int64_t *f_delay;
    uint8_t *f_flags;
    uint32_t *f_aux;
    uint64_t f_mask;
    _Atomic uint64_t f_head, f_tail;
    /* counters */
    uint64_t received, accepted, dropped_loss, corrupted, reordered, kernel_ts, model_starved;
    uint64_t bytes_received, batch_verdicts, single_verdicts, oom_dropped;
    uint64_t hist[LATE_BINS + 1];
    uint64_t late_total;
    int64_t late_max_ns;
} queue_t;

typedef struct {
    PyObject_HEAD
    int fd;
    int wake_fd;
    int rcvbuf_bytes;
    queue_t *q;
    int nq;
    _Atomic int stop;
    int running;
    int64_t lead_ns;
    int64_t read_batch_ns;
    /* CLOCK_REALTIME - CLOCK_MONOTONIC (ns) from bracketed reads (clock_offset_read) */
    int64_t clock_offset_ns;
    int64_t clock_best_width_ns;
    nlbuf_t send;
    uint8_t *rbuf;
    size_t rbuf_each;
    unsigned rbuf_n;
    struct mmsghdr *mmsg;
    struct iovec *iov;
    uint64_t verdict_errors, recv_errors, send_errors;
    int last_verdict_errno;
    int64_t dues_tmp[MAX_RELEASE_PER_PASS];
    vop_t ops_tmp[MAX_RELEASE_PER_PASS * 2 + 2];
} Engine;

static queue_t *engine_queue(Engine *e, uint16_t num)
{
    for (int i = 0; i < e->nq; i++)
        if (e->q[i].queue_num == num)
            return &e->q[i];
    return NULL;
}

static int send_all(Engine *e)
{
    if (!e->send.len)
        return 0;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    ssize_t r;
    do {
        r = sendto(e->fd, e->send.buf, e->send.len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
    } while (r < 0 && errno == EINTR);
    e->send.len = 0;
    if (r < 0) {
        e->send_errors++;
        return -1;
    }
    return 0;
}

static void ensure_room(Engine *e, size_t need)
{
    if (e->send.len + need > e->send.cap)
        send_all(e);
}

static void emit_verdict(Engine *e, queue_t *q, int batch, uint32_t verdict, uint32_t id,
                         const uint8_t *payload, uint32_t plen)
{
    size_t need = verdict_size(plen);
    ensure_room(e, need);
    put_verdict(&e->send, q->queue_num, batch, verdict, id, payload, plen);
    if (batch)
        q->batch_verdicts++;
    else
        q->single_verdicts++;
}

/* next model draw for a packet; waits a little for the producer if empty */
static void feed_next(queue_t *q, int64_t *delay_ns, uint32_t *flags, uint32_t *aux)
{
    if (q->const_mode) {
        *delay_ns = q->const_delay_ns;
        *flags = 0;
        *aux = 0;
        return;
    }
    uint64_t head = atomic_load_explicit(&q->f_head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&q->f_tail, memory_order_acquire);
    if (head == tail) {
        int64_t deadline = clock_ns(CLOCK_MONOTONIC) + STARVE_WAIT_NS;
        struct timespec nap = {0, 20000};
        while (head == tail && clock_ns(CLOCK_MONOTONIC) < deadline) {
            nanosleep(&nap, NULL);
            tail = atomic_load_explicit(&q->f_tail, memory_order_acquire);
        }
        if (head == tail) {
            q->model_starved++;
            *delay_ns = q->const_delay_ns;
            *flags = 0;
            *aux = 0;
            return;
        }
    }
    uint64_t i = head & q->f_mask;
    *delay_ns = q->f_delay[i];
    *flags = q->f_flags[i];
    *aux = q->f_aux[i];
    atomic_store_explicit(&q->f_head, head + 1, memory_order_release);
}

/*
 * The kernel stamps a queued packet's arrival on CLOCK_REALTIME; the line
 * runs on CLOCK_MONOTONIC. The offset between them comes from a reading
 * bracketed by two monotonic reads (monotonic, real-time, monotonic: the
 * real-time read less the bracket's middle), adopted only when the bracket
 * is no wider than max(2 x the tightest seen, CLOCK_TIGHT_NS). A line
 * preempted between two reads would otherwise carry the preemption into the
 * conversion and release that batch's packets early by as much (the one-way
 * delay probe had the same bug: owd_probe.ClockOffset). A stepped real-time
 * clock is followed at the next tight reading.
 */
#define CLOCK_TIGHT_NS 5000LL

static void clock_offset_read(Engine *e, int64_t *now_mono)
{
    int64_t before = clock_ns(CLOCK_MONOTONIC);
    int64_t real = clock_ns(CLOCK_REALTIME);
    int64_t after = clock_ns(CLOCK_MONOTONIC);
    int64_t width = after - before;
    int64_t limit = 2 * e->clock_best_width_ns;
    if (limit < CLOCK_TIGHT_NS)
        limit = CLOCK_TIGHT_NS;
    if (e->clock_best_width_ns < 0 || width <= limit) {
        e->clock_offset_ns = real - (before + width / 2);
        if (e->clock_best_width_ns < 0 || width < e->clock_best_width_ns)
            e->clock_best_width_ns = width;
    }
    *now_mono = after;
}

static void handle_packet(Engine *e, uint16_t queue_num, struct nlattr *attrs, size_t attrs_len,
                          int64_t now_mono)
{
    queue_t *q = engine_queue(e, queue_num);
    if (!q)
        return;
    uint32_t id = 0, cap_len = 0;
    int have_id = 0;
    int64_t ts_ns = 0;
    uint8_t *payload = NULL;
    uint32_t payload_len = 0;
    struct nlattr *a = attrs;
    size_t rem = attrs_len;
    while (rem >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= rem) {
        uint8_t *d = (uint8_t *)a + NLA_HDRLEN;
        size_t dl = a->nla_len - NLA_HDRLEN;
        switch (a->nla_type & NLA_TYPE_MASK) {
        case NFQA_PACKET_HDR:
            if (dl >= sizeof(struct nfqnl_msg_packet_hdr)) {
                id = ntohl(((struct nfqnl_msg_packet_hdr *)d)->packet_id);
                have_id = 1;
            }
            break;
        case NFQA_TIMESTAMP:
            if (dl >= sizeof(struct nfqnl_msg_packet_timestamp)) {
                struct nfqnl_msg_packet_timestamp *t = (void *)d;
                ts_ns = (int64_t)be64toh(t->sec) * 1000000000LL + (int64_t)be64toh(t->usec) * 1000LL;
            }
            break;
        case NFQA_PAYLOAD:
            payload = d;
            payload_len = (uint32_t)dl;
            break;
        case NFQA_CAP_LEN:
            if (dl >= 4)
                cap_len = ntohl(*(uint32_t *)d);
            break;
        default:
            break;
        }
        size_t step = NLA_ALIGN(a->nla_len);
        if (step >= rem)
            break;
        rem -= step;
        a = (struct nlattr *)((uint8_t *)a + step);
    }
    if (!have_id)
        return;
    int64_t arrival = now_mono;
    if (ts_ns) {
        int64_t stamped = ts_ns - e->clock_offset_ns; /* the stamp on CLOCK_MONOTONIC */
        int64_t age = now_mono - stamped;
        if (age >= 0 && age < MAX_TS_AGE_NS) {
            arrival = stamped;
            q->kernel_ts++;
        }
    }
    q->received++;
    q->bytes_received += cap_len > payload_len ? cap_len : payload_len;
    int64_t delay_ns;
    uint32_t flags, aux;
    feed_next(q, &delay_ns, &flags, &aux);
    if (flags & FLAG_LOSE) {
        q->dropped_loss++;
        emit_verdict(e, q, 0, NF_DROP, id, NULL, 0);
        return;
    }
    uint8_t *copy = NULL;
    if (flags & FLAG_CORRUPT) {
        q->corrupted++;
        if (payload && payload_len) {
            copy = malloc(payload_len);
            if (copy) {
                memcpy(copy, payload, payload_len);
                corrupt_bit(copy, payload_len, aux);
            }
        }
    }
    int reorder = (flags & FLAG_REORDER) != 0;
    if (reorder)
        q->reordered++;
    if (sched_arrive(&q->s, id, arrival, delay_ns, reorder, copy, copy ? payload_len : 0) < 0) {
        free(copy);
        q->oom_dropped++;
        emit_verdict(e, q, 0, NF_DROP, id, NULL, 0);
    }
}

static void handle_datagram(Engine *e, uint8_t *buf, size_t len, int64_t now_mono)
{
    struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
    int rem = (int)len; /* signed: NLMSG_NEXT may step past a short last message */
    while (NLMSG_OK(nlh, rem)) {
        if (nlh->nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr *err = NLMSG_DATA(nlh);
            if (err->error) {
                e->verdict_errors++;
                e->last_verdict_errno = -err->error;
            }
        } else if (nlh->nlmsg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) {
            struct nfgenmsg *g = NLMSG_DATA(nlh);
            size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
            if (nlh->nlmsg_len >= off)
                handle_packet(e, ntohs(g->res_id), (struct nlattr *)((uint8_t *)nlh + off),
                              nlh->nlmsg_len - off, now_mono);
        }
        nlh = NLMSG_NEXT(nlh, rem);
    }
}

/* read what is waiting (a few recvmmsg rounds at most; more after a batched wait) */
static void receive_some(Engine *e, int max_rounds)
{
    for (int round = 0; round < max_rounds; round++) {
        for (unsigned i = 0; i < e->rbuf_n; i++) {
            e->iov[i].iov_base = e->rbuf + (size_t)i * e->rbuf_each;
            e->iov[i].iov_len = e->rbuf_each;
            memset(&e->mmsg[i].msg_hdr, 0, sizeof(struct msghdr));
            e->mmsg[i].msg_hdr.msg_iov = &e->iov[i];
            e->mmsg[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(e->fd, e->mmsg, e->rbuf_n, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                e->recv_errors++;
            return;
        }
        int64_t now_mono;
        clock_offset_read(e, &now_mono);
        for (int i = 0; i < n; i++)
            handle_datagram(e, (uint8_t *)e->iov[i].iov_base, e->mmsg[i].msg_len, now_mono);
        if ((unsigned)n < e->rbuf_n)
            return;
    }
}

static void release_due(Engine *e)
{
    int64_t now = clock_ns(CLOCK_MONOTONIC);
    size_t total = 0;
    size_t per_queue[64];
    for (int qi = 0; qi < e->nq; qi++) {
        queue_t *q = &e->q[qi];
        size_t n_ops = 0;
        size_t room = MAX_RELEASE_PER_PASS - total;
        per_queue[qi] = 0;
        if (!room)
            continue;
        size_t n = sched_release(&q->s, now, room, e->dues_tmp + total, e->ops_tmp, &n_ops);
        for (size_t k = 0; k < n_ops; k++) {
            vop_t *op = &e->ops_tmp[k];
            emit_verdict(e, q, op->kind == OP_BATCH, NF_ACCEPT, op->id, op->payload, op->payload_len);
            free(op->payload);
        }
        q->accepted += n;
        per_queue[qi] = n;
        total += n;
    }
    send_all(e);
    if (!total)
        return;
    /* lateness: the verdicts are out now */
    int64_t t = clock_ns(CLOCK_MONOTONIC);
    size_t off = 0;
    for (int qi = 0; qi < e->nq; qi++) {
        queue_t *q = &e->q[qi];
        for (size_t i = 0; i < per_queue[qi]; i++, off++) {
            int64_t late = t - e->dues_tmp[off];
            q->hist[late_bin(late)]++;
            q->late_total++;
            if (late > q->late_max_ns)
                q->late_max_ns = late;
        }
    }
}

static int64_t next_due(Engine *e)
{
    int64_t due = INF_NS;
    for (int i = 0; i < e->nq; i++) {
        int64_t d = sched_head_due(&e->q[i].s);
        if (d < due)
            due = d;
    }
    return due;
}

/*
 * Batched reads. While packets are held, the loop need not wake for every
 * arrival: the kernel stamps each packet (NFQA_TIMESTAMP), so a read a
 * little later still gives it its true arrival and due time. Waking per
 * packet costs a context switch each (the line runs SCHED_FIFO, so every
 * arrival preempts whatever runs); batching keeps the wake-ups to the due
 * times and one read per read_batch_ns. Only where no packet can fall due
 * before the next read: every queue constant (no jitter draws, no reorder)
 * and read_batch_ns = half the smallest delay, at most READ_BATCH_MAX_NS
 * (about 400 packets of 1500 B at 10 Gbit/s); below READ_BATCH_MIN_NS every
 * arrival is read at once, as when the line holds nothing.
 */
static void update_read_batch(Engine *e)
{
    int64_t min_delay = INF_NS;
    for (int i = 0; i < e->nq; i++) {
        if (!e->q[i].const_mode) {
            e->read_batch_ns = 0;
            return;
        }
        if (e->q[i].const_delay_ns < min_delay)
            min_delay = e->q[i].const_delay_ns;
    }
    int64_t r = min_delay / 2;
    e->read_batch_ns = r < READ_BATCH_MIN_NS ? 0 : r > READ_BATCH_MAX_NS ? READ_BATCH_MAX_NS : r;
}

/* returns 1 when woken by wake_fd, 0 when stopped */
static int engine_loop(Engine *e)
{
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
    while (!atomic_load(&e->stop)) {
        release_due(e);
        int64_t due = next_due(e);
        int64_t now = clock_ns(CLOCK_MONOTONIC);
        int64_t timeout = due == INF_NS ? IDLE_WAIT_NS : due - now - e->lead_ns;
        /* holding packets with batched reads: sleep to the due time or the next read */
        int batch = e->read_batch_ns > 0 && due != INF_NS && e->wake_fd >= 0;
        if (batch && timeout > e->read_batch_ns)
            timeout = e->read_batch_ns;
        struct pollfd pfd[2] = {{e->fd, POLLIN, 0}, {e->wake_fd, POLLIN, 0}};
        if (batch)
            pfd[0].fd = -1; /* poll ignores it: arrivals do not wake the line */
        nfds_t nfds = e->wake_fd >= 0 ? 2 : 1;
        int r;
        if (timeout > 0) {
            if (timeout > IDLE_WAIT_NS)
                timeout = IDLE_WAIT_NS;
            struct timespec ts = {timeout / 1000000000LL, timeout % 1000000000LL};
            r = ppoll(pfd, nfds, &ts, NULL);
            if (r == 0 && due != INF_NS && timeout < IDLE_WAIT_NS) {
                int64_t over = clock_ns(CLOCK_MONOTONIC) - now - timeout;
                int64_t lead = (int64_t)(0.9 * e->lead_ns + 0.1 * (over + LEAD_MARGIN_NS));
                e->lead_ns = lead < LEAD_MIN_NS ? LEAD_MIN_NS : lead > LEAD_MAX_NS ? LEAD_MAX_NS : lead;
            }
        } else {
            r = poll(pfd, nfds, 0);
        }
        if (r < 0)
            continue; /* EINTR */
        if (nfds == 2 && (pfd[1].revents & POLLIN))
            return 1;
        if (batch)
            receive_some(e, 64);
        else if (pfd[0].revents & (POLLIN | POLLERR))
            receive_some(e, 8);
    }
    return 0;
}

/* ---- config (bind) ---- */

static int nl_request(Engine *e, nlbuf_t *b)
{
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(e->fd, b->buf, b->len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return -errno;
    uint8_t rb[8192];
    for (;;) {
        struct pollfd p = {e->fd, POLLIN, 0};
        if (poll(&p, 1, 2000) <= 0)
            return -ETIMEDOUT;
        ssize_t n = recv(e->fd, rb, sizeof(rb), 0);
        if (n < 0)
            return -errno;
        struct nlmsghdr *nlh = (struct nlmsghdr *)rb;
        int rem = (int)n;
        while (NLMSG_OK(nlh, rem)) {
            if (nlh->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *err = NLMSG_DATA(nlh);
                return err->error; /* 0 = ack */
            }
            nlh = NLMSG_NEXT(nlh, rem);
        }
    }
}

static int bind_queue(Engine *e, queue_t *q, uint32_t seq)
{
    uint8_t buf[512];
    nlbuf_t b = {buf, 0, sizeof(buf)};
    struct nlmsghdr *nlh = nl_begin(&b, NFQNL_MSG_CONFIG, NLM_F_ACK, q->queue_num, seq);
    struct nfqnl_msg_config_cmd cmd = {NFQNL_CFG_CMD_BIND, 0, htons(AF_INET)};
    nl_attr(nlh, NFQA_CFG_CMD, &cmd, sizeof(cmd));
    nl_end(&b, nlh);
    int err = nl_request(e, &b);
    if (err)
        return err;
    b.len = 0;
    nlh = nl_begin(&b, NFQNL_MSG_CONFIG, NLM_F_ACK, q->queue_num, seq + 1);
    /* 64 header bytes (cheap, and the kernel then reports the length in
     * NFQA_CAP_LEN) or the whole packet when the queue corrupts */
    struct nfqnl_msg_config_params params = {htonl(q->copy_payload ? 0xFFFF : HEADER_COPY_BYTES),
                                             NFQNL_COPY_PACKET};
    nl_attr(nlh, NFQA_CFG_PARAMS, &params, sizeof(params));
    uint32_t maxlen = htonl(q->max_len);
    nl_attr(nlh, NFQA_CFG_QUEUE_MAXLEN, &maxlen, sizeof(maxlen));
    uint32_t flags = htonl(q->gso ? NFQA_CFG_F_GSO : 0);
    uint32_t mask = htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN);
    nl_attr(nlh, NFQA_CFG_FLAGS, &flags, sizeof(flags));
    nl_attr(nlh, NFQA_CFG_MASK, &mask, sizeof(mask));
    nl_end(&b, nlh);
    return nl_request(e, &b);
}

/* ---- Python type ---- */

static void Engine_dealloc(Engine *e)
{
    if (e->fd >= 0)
        close(e->fd);
    for (int i = 0; i < e->nq; i++) {
        sched_free(&e->q[i].s);
        free(e->q[i].f_delay);
        free(e->q[i].f_flags);
        free(e->q[i].f_aux);
    }
    free(e->q);
    free(e->send.buf);
    free(e->rbuf);
    free(e->mmsg);
    free(e->iov);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static int dict_int(PyObject *d, const char *key, long long dflt, long long *out)
{
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    *out = PyLong_AsLongLong(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int Engine_init(Engine *e, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"queues", "wake_fd", "rcvbuf_bytes", "feed_size", NULL};
    PyObject *queues;
    int wake_fd = -1, rcvbuf = 32 << 20, feed_size = 1 << 16;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|iii", kwlist, &queues, &wake_fd, &rcvbuf, &feed_size))
        return -1;
    if (e->q) {
        PyErr_SetString(PyExc_RuntimeError, "Engine already initialised");
        return -1;
    }
    if (feed_size <= 0 || (feed_size & (feed_size - 1))) {
        PyErr_SetString(PyExc_ValueError, "feed_size must be a power of two");
        return -1;
    }
    PyObject *seq = PySequence_Fast(queues, "queues must be a sequence of dicts");
    if (!seq)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > 64) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "need 1..64 queues");
        return -1;
    }
    e->fd = -1;
    e->wake_fd = wake_fd;
    e->rcvbuf_bytes = rcvbuf;
    e->lead_ns = 100000;
    e->clock_best_width_ns = -1;
    for (int k = 0; k < 32; k++) { /* calibrate: the tightest of 32 readings */
        int64_t now;
        clock_offset_read(e, &now);
    }
    e->q = calloc((size_t)n, sizeof(queue_t));
    e->nq = (int)n;
    int any_payload = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyDict_Check(d)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "each queue must be a dict");
            return -1;
        }
        long long num, maxlen, gso, copy, cmode, cdelay;
        if (dict_int(d, "queue_num", -1, &num) || dict_int(d, "max_len", 10000, &maxlen) ||
            dict_int(d, "gso", 1, &gso) || dict_int(d, "copy_payload", 0, &copy) ||
            dict_int(d, "const_mode", 1, &cmode) || dict_int(d, "delay_ns", 0, &cdelay)) {
            Py_DECREF(seq);
            return -1;
        }
        if (num < 0 || num > 65535 || maxlen < 1 || maxlen > 0xFFFFFFFFLL || cdelay < 0) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "bad queue_num, max_len or delay_ns");
            return -1;
        }
        queue_t *q = &e->q[i];
        q->queue_num = (uint16_t)num;
        q->max_len = (uint32_t)maxlen;
        q->gso = (int)gso;
        q->copy_payload = (int)copy;
        q->const_mode = (int)cmode;
        q->const_delay_ns = cdelay;
        any_payload |= q->copy_payload;
        sched_init(&q->s);
        /* every queue gets a ring: reconfigure may turn a constant queue random */
        q->f_delay = calloc((size_t)feed_size, sizeof(int64_t));
        q->f_flags = calloc((size_t)feed_size, 1);
        q->f_aux = calloc((size_t)feed_size, sizeof(uint32_t));
        q->f_mask = (uint64_t)feed_size - 1;
        if (!q->f_delay || !q->f_flags || !q->f_aux) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_DECREF(seq);
    e->send.cap = SENDBUF_BYTES;
    e->send.buf = malloc(e->send.cap);
    e->rbuf_each = any_payload ? 65536 + 4096 : 4096;
    e->rbuf_n = any_payload ? 32 : 256;
    e->rbuf = malloc(e->rbuf_each * e->rbuf_n);
    e->mmsg = calloc(e->rbuf_n, sizeof(struct mmsghdr));
    e->iov = calloc(e->rbuf_n, sizeof(struct iovec));
    if (!e->send.buf || !e->rbuf || !e->mmsg || !e->iov) {
        PyErr_NoMemory();
        return -1;
    }
    update_read_batch(e);
    return 0;
}

static PyObject *Engine_bind(Engine *e, PyObject *noargs)
{
    if (e->fd >= 0) {
        PyErr_SetString(PyExc_RuntimeError, "already bound");
        return NULL;
    }
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    e->fd = fd;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &e->rcvbuf_bytes, sizeof(int)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &e->rcvbuf_bytes, sizeof(int));
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));
    struct sockaddr_nl local = {.nl_family = AF_NETLINK};
    if (bind(fd, (struct sockaddr *)&local, sizeof(local)) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    for (int i = 0; i < e->nq; i++) {
        int err = bind_queue(e, &e->q[i], (uint32_t)(i * 2 + 1));
        if (err) {
            errno = -err;
            PyErr_Format(PyExc_OSError, "binding NFQUEUE queue %d: %s", e->q[i].queue_num, strerror(-err));
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

/* Change a bound queue's GSO flag: one config message, no ack asked (the
 * loop owns the socket's input; a refusal arrives as an NLMSG_ERROR that
 * the loop counts in verdict_errors). */
static int send_queue_flags(Engine *e, queue_t *q)
{
    uint8_t buf[256];
    nlbuf_t b = {buf, 0, sizeof(buf)};
    struct nlmsghdr *nlh = nl_begin(&b, NFQNL_MSG_CONFIG, 0, q->queue_num, 0);
    uint32_t flags = htonl(q->gso ? NFQA_CFG_F_GSO : 0);
    uint32_t mask = htonl(NFQA_CFG_F_GSO);
    nl_attr(nlh, NFQA_CFG_FLAGS, &flags, sizeof(flags));
    nl_attr(nlh, NFQA_CFG_MASK, &mask, sizeof(mask));
    nl_end(&b, nlh);
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    ssize_t r;
    do {
        r = sendto(e->fd, b.buf, b.len, 0, (struct sockaddr *)&kernel, sizeof(kernel));
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

static PyObject *Engine_reconfigure(Engine *e, PyObject *args)
{
    int qi;
    PyObject *d;
    if (!PyArg_ParseTuple(args, "iO!", &qi, &PyDict_Type, &d))
        return NULL;
    if (qi < 0 || qi >= e->nq) {
        PyErr_SetString(PyExc_ValueError, "no such queue");
        return NULL;
    }
    if (e->running) {
        PyErr_SetString(PyExc_RuntimeError, "reconfigure() while run() is looping");
        return NULL;
    }
    queue_t *q = &e->q[qi];
    long long cmode, cdelay, gso, copy;
    if (dict_int(d, "const_mode", q->const_mode, &cmode) ||
        dict_int(d, "delay_ns", q->const_delay_ns, &cdelay) || dict_int(d, "gso", q->gso, &gso) ||
        dict_int(d, "copy_payload", q->copy_payload, &copy))
        return NULL;
    if (cdelay < 0) {
        PyErr_SetString(PyExc_ValueError, "bad delay_ns");
        return NULL;
    }
    if ((int)copy != q->copy_payload) {
        PyErr_SetString(PyExc_ValueError, "copy_payload (corrupt) cannot change at runtime");
        return NULL;
    }
    q->const_mode = (int)cmode;
    q->const_delay_ns = cdelay;
    update_read_batch(e);
    /* drop the old model's draws: the loop is not running, the producer holds its lock */
    atomic_store(&q->f_head, atomic_load(&q->f_tail));
    if ((int)gso != q->gso) {
        q->gso = (int)gso;
        if (e->fd >= 0) {
            int err = send_queue_flags(e, q);
            if (err) {
                errno = -err;
                return PyErr_SetFromErrno(PyExc_OSError);
            }
        }
    }
    Py_RETURN_NONE;
}

static PyObject *Engine_run(Engine *e, PyObject *noargs)
{
    if (e->fd < 0) {
        PyErr_SetString(PyExc_RuntimeError, "bind() first");
        return NULL;
    }
    if (e->running) {
        PyErr_SetString(PyExc_RuntimeError, "already running");
        return NULL;
    }
    e->running = 1;
    int woken;
    Py_BEGIN_ALLOW_THREADS
    woken = engine_loop(e);
    Py_END_ALLOW_THREADS
    e->running = 0;
    return PyBool_FromLong(woken);
}

static PyObject *Engine_stop(Engine *e, PyObject *noargs)
{
    atomic_store(&e->stop, 1);
    Py_RETURN_NONE;
}

static PyObject *Engine_push(Engine *e, PyObject *args)
{
    int qi;
    Py_buffer bd, bf, ba;
    if (!PyArg_ParseTuple(args, "iy*y*y*", &qi, &bd, &bf, &ba))
        return NULL;
    PyObject *res = NULL;
    if (qi < 0 || qi >= e->nq || e->q[qi].const_mode) {
        PyErr_SetString(PyExc_ValueError, "no such queue with a feed");
        goto out;
    }
    Py_ssize_t n = bd.len / 8;
    if (bd.len % 8 || bf.len != n || ba.len != n * 4) {
        PyErr_SetString(PyExc_ValueError, "push(qi, int64 delays, uint8 flags, uint32 aux): lengths differ");
        goto out;
    }
    queue_t *q = &e->q[qi];
    uint64_t tail = atomic_load_explicit(&q->f_tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&q->f_head, memory_order_acquire);
    uint64_t space = (q->f_mask + 1) - (tail - head);
    Py_ssize_t k = (Py_ssize_t)space < n ? (Py_ssize_t)space : n;
    const int64_t *dd = bd.buf;
    const uint8_t *ff = bf.buf;
    const uint32_t *aa = ba.buf;
    for (Py_ssize_t i = 0; i < k; i++) {
        uint64_t j = (tail + (uint64_t)i) & q->f_mask;
        q->f_delay[j] = dd[i];
        q->f_flags[j] = ff[i];
        q->f_aux[j] = aa[i];
    }
    atomic_store_explicit(&q->f_tail, tail + (uint64_t)k, memory_order_release);
    res = PyLong_FromSsize_t(k);
out:
    PyBuffer_Release(&bd);
    PyBuffer_Release(&bf);
    PyBuffer_Release(&ba);
    return res;
}

static PyObject *Engine_feed_level(Engine *e, PyObject *args)
{
    int qi;
    if (!PyArg_ParseTuple(args, "i", &qi))
        return NULL;
    if (qi < 0 || qi >= e->nq) {
        PyErr_SetString(PyExc_ValueError, "no such queue");
        return NULL;
    }
    queue_t *q = &e->q[qi];
    uint64_t tail = atomic_load(&q->f_tail), head = atomic_load(&q->f_head);
    return Py_BuildValue("(KK)", (unsigned long long)(tail - head), (unsigned long long)(q->const_mode ? 0 : q->f_mask + 1));
}

#define SET(d, k, v) do { PyObject *_o = (v); if (!_o || PyDict_SetItemString(d, k, _o) < 0) { Py_XDECREF(_o); Py_DECREF(d); return NULL; } Py_DECREF(_o); } while (0)

static PyObject *queue_stats(queue_t *q)
{
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    SET(d, "queue_num", PyLong_FromLong(q->queue_num));
    SET(d, "received", PyLong_FromUnsignedLongLong(q->received));
    SET(d, "accepted", PyLong_FromUnsignedLongLong(q->accepted));
    SET(d, "dropped_loss", PyLong_FromUnsignedLongLong(q->dropped_loss));
    SET(d, "corrupted", PyLong_FromUnsignedLongLong(q->corrupted));
    SET(d, "reordered", PyLong_FromUnsignedLongLong(q->reordered));
    SET(d, "kernel_ts", PyLong_FromUnsignedLongLong(q->kernel_ts));
    SET(d, "model_starved", PyLong_FromUnsignedLongLong(q->model_starved));
    SET(d, "bytes_received", PyLong_FromUnsignedLongLong(q->bytes_received));
    SET(d, "batch_verdicts", PyLong_FromUnsignedLongLong(q->batch_verdicts));
    SET(d, "single_verdicts", PyLong_FromUnsignedLongLong(q->single_verdicts));
    SET(d, "oom_dropped", PyLong_FromUnsignedLongLong(q->oom_dropped));
    SET(d, "held", PyLong_FromSize_t(sched_held(&q->s)));
    SET(d, "held_max", PyLong_FromSize_t(q->s.held_max));
    PyObject *counts = PyList_New(LATE_BINS + 1);
    if (!counts) {
        Py_DECREF(d);
        return NULL;
    }
    for (int i = 0; i <= LATE_BINS; i++)
        PyList_SET_ITEM(counts, i, PyLong_FromUnsignedLongLong(q->hist[i]));
    SET(d, "late_counts", counts);
    SET(d, "late_total", PyLong_FromUnsignedLongLong(q->late_total));
    SET(d, "late_max_s", PyFloat_FromDouble(q->late_max_ns / 1e9));
    return d;
}

static PyObject *Engine_stats(Engine *e, PyObject *noargs)
{
    PyObject *lst = PyList_New(e->nq);
    if (!lst)
        return NULL;
    for (int i = 0; i < e->nq; i++) {
        PyObject *d = queue_stats(&e->q[i]);
        if (!d) {
            Py_DECREF(lst);
            return NULL;
        }
        PyList_SET_ITEM(lst, i, d);
    }
    PyObject *d = PyDict_New();
    if (!d) {
        Py_DECREF(lst);
        return NULL;
    }
    SET(d, "queues", lst);
    SET(d, "lead_us", PyFloat_FromDouble(e->lead_ns / 1000.0));
    SET(d, "read_batch_us", PyFloat_FromDouble(e->read_batch_ns / 1000.0));
    SET(d, "verdict_errors", PyLong_FromUnsignedLongLong(e->verdict_errors));
    SET(d, "last_verdict_errno", PyLong_FromLong(e->last_verdict_errno));
    SET(d, "recv_errors", PyLong_FromUnsignedLongLong(e->recv_errors));
    SET(d, "send_errors", PyLong_FromUnsignedLongLong(e->send_errors));
    return d;
}

static PyObject *Engine_close(Engine *e, PyObject *noargs)
{
    if (e->running) {
        PyErr_SetString(PyExc_RuntimeError, "still running");
        return NULL;
    }
    if (e->fd >= 0) {
        close(e->fd); /* the kernel drops what is still queued */
        e->fd = -1;
    }
    Py_RETURN_NONE;
}

static PyMethodDef Engine_methods[] = {
    {"bind", (PyCFunction)Engine_bind, METH_NOARGS, "Open the netlink socket and bind every queue."},
    {"run", (PyCFunction)Engine_run, METH_NOARGS,
     "Run the packet loop (GIL released). Returns True when woken by wake_fd, False when stopped."},
    {"stop", (PyCFunction)Engine_stop, METH_NOARGS, "Ask run() to return (any thread)."},
    {"push", (PyCFunction)Engine_push, METH_VARARGS,
     "push(qi, delays_ns int64 buf, flags uint8 buf, aux uint32 buf) -> entries taken."},
    {"feed_level", (PyCFunction)Engine_feed_level, METH_VARARGS, "feed_level(qi) -> (filled, size)."},
    {"reconfigure", (PyCFunction)Engine_reconfigure, METH_VARARGS,
     "reconfigure(qi, {const_mode, delay_ns, gso}) between run() calls; empties the feed ring."},
    {"stats", (PyCFunction)Engine_stats, METH_NOARGS, "Counters and lateness histograms."},
    {"close", (PyCFunction)Engine_close, METH_NOARGS, "Close the socket (queued packets are dropped)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "testbed.delayline._fastline.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "NFQUEUE delay line packet loop.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
};

/* ---- Scheduler: the pure core, for tests ---- */

typedef struct {
    PyObject_HEAD
    sched_t s;
} Scheduler;

static int Scheduler_init(Scheduler *self, PyObject *args, PyObject *kw)
{
    sched_free(&self->s);
    sched_init(&self->s);
    return 0;
}

static void Scheduler_dealloc(Scheduler *self)
{
    sched_free(&self->s);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Scheduler_arrive(Scheduler *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"packet_id", "arrival_ns", "delay_ns", "reorder", "payload", NULL};
    unsigned long id;
    long long arrival, delay;
    int reorder = 0;
    Py_buffer pb = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "kLL|py*", kwlist, &id, &arrival, &delay, &reorder, &pb))
        return NULL;
    uint8_t *copy = NULL;
    uint32_t len = 0;
    if (pb.buf && pb.len) {
        copy = malloc((size_t)pb.len);
        memcpy(copy, pb.buf, (size_t)pb.len);
        len = (uint32_t)pb.len;
    }
    if (pb.obj)
        PyBuffer_Release(&pb);
    int64_t due = sched_arrive(&self->s, (uint32_t)id, arrival, delay, reorder, copy, len);
    if (due < 0) {
        free(copy);
        return PyErr_NoMemory();
    }
    return PyLong_FromLongLong(due);
}

static PyObject *Scheduler_release(Scheduler *self, PyObject *args)
{
    long long now;
    Py_ssize_t max_out = MAX_RELEASE_PER_PASS;
    if (!PyArg_ParseTuple(args, "L|n", &now, &max_out))
        return NULL;
    if (max_out < 1 || max_out > 1 << 20) {
        PyErr_SetString(PyExc_ValueError, "max_out out of range");
        return NULL;
    }
    int64_t *dues = malloc((size_t)max_out * sizeof(int64_t));
    vop_t *ops = malloc(((size_t)max_out * 2 + 2) * sizeof(vop_t));
    size_t n_ops = 0;
    size_t n = sched_release(&self->s, now, (size_t)max_out, dues, ops, &n_ops);
    PyObject *lops = PyList_New((Py_ssize_t)n_ops);
    PyObject *ldues = PyList_New((Py_ssize_t)n);
    for (size_t k = 0; k < n_ops; k++) {
        PyObject *t;
        if (ops[k].payload)
            t = Py_BuildValue("(sky#)", ops[k].kind == OP_BATCH ? "batch" : "single",
                              (unsigned long)ops[k].id, ops[k].payload, (Py_ssize_t)ops[k].payload_len);
        else
            t = Py_BuildValue("(sk)", ops[k].kind == OP_BATCH ? "batch" : "single", (unsigned long)ops[k].id);
        free(ops[k].payload);
        PyList_SET_ITEM(lops, (Py_ssize_t)k, t);
    }
    for (size_t i = 0; i < n; i++)
        PyList_SET_ITEM(ldues, (Py_ssize_t)i, PyLong_FromLongLong(dues[i]));
    free(dues);
    free(ops);
    return Py_BuildValue("(NN)", lops, ldues);
}

static PyObject *Scheduler_head_due(Scheduler *self, PyObject *noargs)
{
    int64_t d = sched_head_due(&self->s);
    if (d == INF_NS)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(d);
}

static PyObject *Scheduler_held(Scheduler *self, PyObject *noargs)
{
    return PyLong_FromSize_t(sched_held(&self->s));
}

static PyObject *Scheduler_held_max(Scheduler *self, PyObject *noargs)
{
    return PyLong_FromSize_t(self->s.held_max);
}

static PyMethodDef Scheduler_methods[] = {
    {"arrive", (PyCFunction)(void (*)(void))Scheduler_arrive, METH_VARARGS | METH_KEYWORDS,
     "arrive(packet_id, arrival_ns, delay_ns, reorder=False, payload=None) -> due_ns"},
    {"release", (PyCFunction)Scheduler_release, METH_VARARGS,
     "release(now_ns, max_out=8192) -> (verdict ops [(kind, id[, payload])], dues_ns)"},
    {"head_due", (PyCFunction)Scheduler_head_due, METH_NOARGS, "Earliest due time held, or None."},
    {"held", (PyCFunction)Scheduler_held, METH_NOARGS, "Packets held."},
    {"held_max", (PyCFunction)Scheduler_held_max, METH_NOARGS, "Most packets held at once."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SchedulerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "testbed.delayline._fastline.Scheduler",
    .tp_basicsize = sizeof(Scheduler),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The delay line's FIFO/side-heap scheduling core and verdict planner (pure, for tests).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scheduler_init,
    .tp_dealloc = (destructor)Scheduler_dealloc,
    .tp_methods = Scheduler_methods,
};

/* ---- module functions ---- */

static PyObject *py_late_bin(PyObject *m, PyObject *args)
{
    long long late;
    if (!PyArg_ParseTuple(args, "L", &late))
        return NULL;
    return PyLong_FromLong(late_bin(late));
}

static PyObject *py_corrupt(PyObject *m, PyObject *args)
{
    Py_buffer pb;
    unsigned long aux;
    if (!PyArg_ParseTuple(args, "y*k", &pb, &aux))
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(pb.buf, pb.len);
    PyBuffer_Release(&pb);
    if (out)
        corrupt_bit((uint8_t *)PyBytes_AS_STRING(out), (uint32_t)PyBytes_GET_SIZE(out), (uint32_t)aux);
    return out;
}

static PyObject *py_verdict_message(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"queue_num", "packet_id", "accept", "batch", "payload", NULL};
    unsigned int qn;
    unsigned long id;
    int accept = 1, batch = 0;
    Py_buffer pb = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Ik|ppy*", kwlist, &qn, &id, &accept, &batch, &pb))
        return NULL;
    size_t need = verdict_size(pb.obj ? (uint32_t)pb.len : 0);
    uint8_t *buf = calloc(1, need);
    nlbuf_t b = {buf, 0, need};
    put_verdict(&b, (uint16_t)qn, batch, accept ? NF_ACCEPT : NF_DROP, (uint32_t)id,
                pb.obj ? pb.buf : NULL, pb.obj ? (uint32_t)pb.len : 0);
    if (pb.obj)
        PyBuffer_Release(&pb);
    PyObject *out = PyBytes_FromStringAndSize((char *)buf, (Py_ssize_t)b.len);
    free(buf);
    return out;
}

static PyMethodDef module_methods[] = {
    {"late_bin", py_late_bin, METH_VARARGS, "late_bin(late_ns) -> lateness histogram bin (latehist.py's)."},
    {"corrupt", py_corrupt, METH_VARARGS, "corrupt(packet, aux) -> packet with one bit flipped past the IP header."},
    {"verdict_message", (PyCFunction)(void (*)(void))py_verdict_message, METH_VARARGS | METH_KEYWORDS,
     "verdict_message(queue_num, packet_id, accept=True, batch=False, payload=None) -> netlink bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_fastline", "The delay line's packet loop in C (NFQUEUE).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__fastline(void)
{
    if (PyType_Ready(&EngineType) < 0 || PyType_Ready(&SchedulerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m)
        return NULL;
    Py_INCREF(&EngineType);
    Py_INCREF(&SchedulerType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0 ||
        PyModule_AddObject(m, "Scheduler", (PyObject *)&SchedulerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "FLAG_LOSE", FLAG_LOSE);
    PyModule_AddIntConstant(m, "FLAG_CORRUPT", FLAG_CORRUPT);
    PyModule_AddIntConstant(m, "FLAG_REORDER", FLAG_REORDER);
    PyModule_AddIntConstant(m, "LATE_BINS", LATE_BINS);
    return m;
}
