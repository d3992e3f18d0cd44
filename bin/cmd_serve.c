/* cmd_serve.c - `qformer serve`: the index and its models loaded once behind
 * a JSON API and a search page (query/serve.h). Waits for SIGINT/SIGTERM,
 * then stops accepting, lets requests in flight finish and exits 0. */
#include "cli.h"

#include "query/serve.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: qformer serve --db FILE.db [--caption-model DIR] [--caption-dtype f32|bf16|int8]\n"
    "                     [--model DIR] [--host ADDR] [--port N] [--threads N]\n"
    "\n"
    "Keeps the index, the retrieval model (and the captioning model) loaded and answers\n"
    "HTTP on HOST:PORT: a search page at / and a JSON API whose answers are those of the\n"
    "command line (GET /api/search?q=TEXT&k=N&rerank=N&caption=N is exactly what\n"
    "`qformer search --format json` prints). An `index` run on the database is picked up\n"
    "without a restart. SIGINT or SIGTERM: stop accepting, finish the requests in flight,\n"
    "exit 0.\n"
    "  --db FILE.db        the index database (its FILE.db.faiss beside it)\n"
    "  --caption-model DIR captioning checkpoint for caption=N and /api/caption/ID\n"
    "  --caption-dtype T   its language-model weights: f32 (default; exact), bf16 or int8\n"
    "  --model DIR         retrieval checkpoint (default: the one the index was built with)\n"
    "  --host ADDR         numeric address to listen on (default 127.0.0.1: this machine\n"
    "                      only; 0.0.0.0 or :: for every interface, with no access control)\n"
    "  --port N            TCP port (default 8080; 0 picks a free one)\n"
    "  --threads N         requests served at once, one model state each (default: cores)\n"
    "\n"
    "API: GET /api/search?q=TEXT[&k=N&rerank=N&caption=N&prompt=S]; POST /api/search?k=N\n"
    "with an image as the body or a multipart file (image-to-image); GET /api/image/ID\n"
    "[?thumb=1]; GET /api/caption/ID[?prompt=S]; GET /api/info. Errors are JSON\n"
    "{\"error\", \"status\"}.\n"
    "\n"
    "examples:\n"
    "  qformer serve --db photos.db\n"
    "  qformer serve --db photos.db --caption-model Salesforce/blip2-opt-2.7b --caption-dtype int8\n"
    "  curl 'http://127.0.0.1:8080/api/search?q=a+cat+on+a+sofa&k=5'\n"
    "  curl --data-binary @query.jpg 'http://127.0.0.1:8080/api/search?k=5'\n";

int qf_cmd_serve(int argc, char **argv) {
    static const struct option opts[] = {
        { "db", required_argument, 0, 'd' }, { "caption-model", required_argument, 0, 'C' },
        { "caption-dtype", required_argument, 0, 'D' }, { "model", required_argument, 0, 'm' },
        { "host", required_argument, 0, 'H' }, { "port", required_argument, 0, 'p' },
        { "threads", required_argument, 0, 't' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    qf_serve_opts o = { .host = "127.0.0.1", .port = 8080 };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': o.db_path = optarg; break;
        case 'C': o.caption_model = optarg; break;
        case 'D': if (qf_opt_weights_parse(optarg, &o.caption_dtype)) return qf_cli_usage("serve", "--caption-dtype must be f32, bf16 or int8, not '%s'", optarg); break;
        case 'm': o.model_dir = optarg; break;
        case 'H': o.host = optarg; break;
        case 'p': if (!qf_cli_int(optarg, 0, 65535, &o.port)) return qf_cli_usage("serve", "--port: '%s' is not a port from 0 to 65535", optarg); break;
        case 't': if (!qf_cli_int(optarg, 1, 256, &o.threads)) return qf_cli_usage("serve", "--threads: '%s' is not an integer from 1 to 256", optarg); break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return 2;
        }
    }
    if (!o.db_path) return qf_cli_usage("serve", "--db is required");
    if (optind < argc) return qf_cli_usage("serve", "unexpected argument '%s'", argv[optind]);

    /* SIGINT/SIGTERM are taken by sigwait below: blocked before any thread
     * starts, so every thread inherits the mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    qf_server *sv = NULL;
    qf_status s = qf_serve_start(&o, &sv);
    if (s) return qf_cli_fail("serve", s);
    const char *h = o.host;
    int v6 = strchr(h, ':') != NULL;
    printf("qformer serve: http://%s%s%s:%d/ (%s)\n", v6 ? "[" : "", h, v6 ? "]" : "", qf_serve_port(sv), o.db_path);
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    if (qf_cli_verbosity() >= 0)
        fprintf(stderr, "qformer serve: %s: finishing the requests in flight\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    qf_serve_stop(sv, 60);
    return 0;
}
