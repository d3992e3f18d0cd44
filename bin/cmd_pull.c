/* cmd_pull.c - `qformer pull`: download a checkpoint from the Hugging Face hub
 * into the cache (or --dir) with embed/hub. The library reports progress
 * through a callback; this file draws it: a redrawn bar on a terminal
 * (stderr), one plain line per event otherwise. The folder the files landed
 * in is the one line printed on stdout, so scripts can capture it. */
#include "cli.h"

#include "embed/hub.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: qformer pull REPO_ID [--revision R] [--dir DIR] [--endpoint URL] [--retries N] [--quiet]\n"
    "\n"
    "Downloads a BLIP-2 checkpoint from the Hugging Face hub: config.json,\n"
    "generation/preprocessor configs, tokenizer files and the *.safetensors weights\n"
    "(with model.safetensors.index.json when sharded); PyTorch .bin, TF, Flax and\n"
    "ONNX files are skipped. Files go into the hub cache,\n"
    "  $QF_CACHE, else $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub,\n"
    "as models--ORG--NAME/snapshots/COMMIT/, shared with huggingface_hub; after that,\n"
    "every --model option accepts ORG/NAME. The folder is printed on stdout.\n"
    "\n"
    "Downloads are resumable (an interrupted run keeps FILE.incomplete; run the same\n"
    "command again), retried on network errors, and verified: LFS files by their\n"
    "SHA-256, others by their git blob id or size. Files already present are kept.\n"
    "\n"
    "  --revision R     branch, tag or commit (default main)\n"
    "  --dir DIR        put the files in DIR instead of the cache\n"
    "  --endpoint URL   hub server (default $HF_ENDPOINT, else https://huggingface.co)\n"
    "  --retries N      attempts after a broken transfer, per file (default 3)\n"
    "  --quiet          no progress output\n"
    "\n"
    "environment: HF_TOKEN (sent as a bearer token, for gated or private repos; else\n"
    "the token file of `huggingface-cli login`), HF_ENDPOINT, QF_CACHE, HF_HOME.\n"
    "\n"
    "examples:\n"
    "  qformer pull Salesforce/blip2-itm-vit-g\n"
    "  qformer pull Salesforce/blip2-opt-2.7b --dir models/blip2-opt-2.7b\n"
    "  qformer search --db photos.db --caption 3 --caption-model Salesforce/blip2-opt-2.7b 'a cat'\n";

typedef struct {
    int  tty;         /* redraw a bar on stderr */
    int  quiet;
    int  bar_open;    /* a bar line is on screen without its newline */
} view;

static const char *clock_str(double s, char *buf, size_t n) {
    if (s < 0) { snprintf(buf, n, "--:--"); return buf; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else           snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

static int term_width(void) {
    struct winsize w;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col >= 40) return w.ws_col;
    return 80;
}

/* "[2/7] model.safetensors    45% [#########           ] 1.2 GB / 2.6 GB  41.3 MB/s  ETA 0:34"
 * Columns are fixed for a given terminal width, so lines stack up aligned. */
static void draw_bar(view *v, const qf_hub_progress *p, int final) {
    enum { TAIL_W = 36 };
    char a[32], b[32], sp[40], eta[32], tail[160], head[300];
    snprintf(head, sizeof head, "[%d/%d] %s", p->index + 1, p->count, p->file);
    double frac = p->total > 0 ? (double)p->done / (double)p->total : final;
    if (frac > 1) frac = 1;
    sp[0] = 0;
    if (p->bytes_per_s > 0) snprintf(sp, sizeof sp, "  %s/s", qf_format_bytes(p->bytes_per_s, a, sizeof a));
    if (final)
        snprintf(tail, sizeof tail, "%s%s  done", qf_format_bytes((double)p->done, b, sizeof b), sp);
    else
        snprintf(tail, sizeof tail, "%s / %s%s  ETA %s", qf_format_bytes((double)p->done, a, sizeof a),
                 p->total >= 0 ? qf_format_bytes((double)p->total, b, sizeof b) : "?", sp,
                 clock_str(p->eta_s, eta, sizeof eta));
    int width = term_width() - 1;
    int name_w = width - 9 - TAIL_W - 20;            /* "  100% [" + "] " = 9, bar 20 */
    if (name_w > 44) name_w = 44;
    if (name_w < 24) name_w = 24;
    int bar_w = width - name_w - 9 - TAIL_W;
    if (bar_w > 30) bar_w = 30;
    fprintf(stderr, "\r\033[K%-*.*s  %3d%% ", name_w, name_w, head, (int)(frac * 100));
    if (bar_w >= 5) {
        int fill = (int)(frac * bar_w);
        fputc('[', stderr);
        for (int i = 0; i < bar_w; i++) fputc(i < fill ? '#' : ' ', stderr);
        fputs("] ", stderr);
    }
    fputs(tail, stderr);
    if (final) fputc('\n', stderr);
    v->bar_open = !final;
    fflush(stderr);
}

static void end_bar(view *v) {
    if (v->bar_open) fputc('\n', stderr);
    v->bar_open = 0;
}

static void on_progress(const qf_hub_progress *p, void *user) {
    view *v = user;
    char a[32], b[32], c[32];
    if (v->quiet) return;
    switch (p->event) {
    case QF_HUB_EV_LISTED:
        fprintf(stderr, "%d files, %s\n", p->count, qf_format_bytes((double)p->all_total, a, sizeof a));
        break;
    case QF_HUB_EV_SKIP:
        end_bar(v);
        fprintf(stderr, "[%d/%d] %s: already present (%s)\n", p->index + 1, p->count, p->file,
                qf_format_bytes((double)p->done, a, sizeof a));
        break;
    case QF_HUB_EV_START:
        if (v->tty) {
            if (p->resumed_from > 0) {
                end_bar(v);
                fprintf(stderr, "[%d/%d] %s: resuming at %s\n", p->index + 1, p->count, p->file,
                        qf_format_bytes((double)p->resumed_from, a, sizeof a));
            }
            draw_bar(v, p, 0);
        } else if (p->resumed_from > 0) {
            fprintf(stderr, "[%d/%d] %s: resuming at %s of %s\n", p->index + 1, p->count, p->file,
                    qf_format_bytes((double)p->resumed_from, a, sizeof a),
                    p->total >= 0 ? qf_format_bytes((double)p->total, b, sizeof b) : "?");
        } else {
            fprintf(stderr, "[%d/%d] %s: downloading %s\n", p->index + 1, p->count, p->file,
                    p->total >= 0 ? qf_format_bytes((double)p->total, b, sizeof b) : "(size unknown)");
        }
        break;
    case QF_HUB_EV_PROGRESS:
        if (v->tty) draw_bar(v, p, 0);
        break;
    case QF_HUB_EV_DONE:
        if (v->tty) draw_bar(v, p, 1);
        else
            fprintf(stderr, "[%d/%d] %s: done, %s%s%s%s\n", p->index + 1, p->count, p->file,
                    qf_format_bytes((double)p->done, a, sizeof a), p->bytes_per_s > 0 ? " at " : "",
                    p->bytes_per_s > 0 ? qf_format_bytes(p->bytes_per_s, c, sizeof c) : "", p->bytes_per_s > 0 ? "/s" : "");
        break;
    case QF_HUB_EV_RETRY:
        end_bar(v);
        fprintf(stderr, "[%d/%d] %s: interrupted at %s (%s), retrying\n", p->index + 1, p->count, p->file,
                qf_format_bytes((double)p->done, a, sizeof a), p->message ? p->message : "?");
        break;
    }
}

int qf_cmd_pull(int argc, char **argv) {
    static const struct option opts[] = {
        { "revision", required_argument, 0, 'r' }, { "dir", required_argument, 0, 'd' },
        { "endpoint", required_argument, 0, 'e' }, { "retries", required_argument, 0, 'R' },
        { "quiet", no_argument, 0, 'q' },          { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    qf_hub_options opt;
    qf_hub_options_init(&opt);
    view v = { .tty = isatty(STDERR_FILENO) };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
        switch (c) {
        case 'r': opt.revision = optarg; break;
        case 'd': opt.dir = optarg; break;
        case 'e': opt.endpoint = optarg; break;
        case 'R':
            if (!qf_cli_int(optarg, 0, 100, &opt.retries))
                return qf_cli_usage("pull", "--retries: '%s' is not an integer in 0..100", optarg);
            break;
        case 'q': v.quiet = 1; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return qf_cli_usage("pull", "invalid option");
        }
    }
    if (optind >= argc) return qf_cli_usage("pull", "no REPO_ID given (e.g. Salesforce/blip2-itm-vit-g)");
    if (optind + 1 < argc) return qf_cli_usage("pull", "unexpected argument '%s'", argv[optind + 1]);
    const char *repo = argv[optind];
    if (!qf_hub_valid_repo_id(repo))
        return qf_cli_usage("pull", "'%s' is not a hub repo id (expected ORG/NAME)", repo);
    opt.progress = on_progress;
    opt.user = &v;

    if (!v.quiet)
        fprintf(stderr, "pulling %s (revision %s)\n", repo, opt.revision ? opt.revision : "main");
    char dir[QF_HUB_PATH_MAX];
    qf_status s = qf_hub_pull(repo, &opt, dir, sizeof dir);
    end_bar(&v);
    if (s) return qf_cli_fail("pull", s);
    if (!v.quiet) fprintf(stderr, "%s is in %s\n", repo, dir);
    printf("%s\n", dir);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "qformer pull: cannot write to stdout\n");
        return 1;
    }
    return 0;
}
