/* test_serve.c - the serving side of search: qf_search_env_run over parts
 * loaded once gives exactly qf_search_run's results (text, image file and
 * image bytes); qf_serve_start's errors name what is wrong (host, database,
 * busy port); a started server answers HTTP on loopback and stops. A real
 * index of the fixture images is built first (qf_index_run, one process). */
#include "index/pipeline.h"
#include "index/store.h"
#include "query/search.h"
#include "query/serve.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char db[1024], corpus[1024];

static void build_index(void) {
    if (db[0]) return;
    snprintf(corpus, sizeof corpus, "%s/corpus", qf_test_tmpdir());
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s'/*.png '%s'/*.jpg '%s'/", corpus,
             qf_fixture("tiny-blip2-itm/inputs"), qf_fixture("tiny-blip2-itm/inputs"), corpus);
    CU_ASSERT_FATAL(system(cmd) == 0);
    snprintf(db, sizeof db, "%s/u.db", qf_test_tmpdir());
    const char *roots[] = { corpus };
    qf_index_opts o = { .model_dir = qf_fixture("tiny-blip2-itm"), .db_path = db, .roots = roots, .n_roots = 1,
                        .batch = 8, .checkpoint = 64, .threads = 1, .pooled = -1 };
    qf_index_report r;
    qf_status s = qf_index_run(&o, &r);
    if (s) fprintf(stderr, "\nindex: %s\n", qf_last_error());
    CU_ASSERT_FATAL(s == QF_OK);
}

static void same_results(const qf_search_result *a, const qf_search_result *b) {
    CU_ASSERT_EQUAL(a->n, b->n);
    CU_ASSERT_STRING_EQUAL(a->mode, b->mode);
    for (int i = 0; i < a->n && i < b->n; i++) {
        CU_ASSERT_EQUAL(a->hits[i].id, b->hits[i].id);
        CU_ASSERT_STRING_EQUAL(a->hits[i].path, b->hits[i].path);
        CU_ASSERT(memcmp(&a->hits[i].itc, &b->hits[i].itc, sizeof(float)) == 0);
        CU_ASSERT(memcmp(&a->hits[i].score, &b->hits[i].score, sizeof(float)) == 0);
        CU_ASSERT_EQUAL(a->hits[i].has_itm, b->hits[i].has_itm);
    }
}

static void test_env_run_equals_run(void) {
    build_index();
    const char *mdir = qf_fixture("tiny-blip2-itm");
    qf_store *st = NULL;
    qf_blip2 *m = NULL;
    qf_blip2_state *bs = NULL;
    qf_bert *tok = NULL;
    qf_vindex *vi = NULL;
    qf_img_preproc pp;
    char *faiss = qf_store_index_path(db);
    CU_ASSERT_FATAL(qf_store_open(db, QF_STORE_READONLY, &st) == QF_OK);
    CU_ASSERT_FATAL(qf_blip2_load(mdir, QF_BLIP2_ALL, &m) == QF_OK);
    CU_ASSERT_FATAL(qf_blip2_state_init(m, &bs) == QF_OK);
    CU_ASSERT_FATAL(qf_bert_load(mdir, &tok) == QF_OK);
    CU_ASSERT_FATAL(qf_img_preproc_load(mdir, &pp) == QF_OK);
    CU_ASSERT_FATAL(qf_vindex_read(faiss, &vi) == QF_OK);
    qf_search_env env = { .st = st, .m = m, .bs = bs, .tok = tok, .pp = &pp, .vi = vi, .factory = "Flat" };

    const char *texts[] = { "a photo of a dog", "a red circle", "stripes", "" };
    for (int t = 0; t < 3; t++) {
        for (int rerank = 0; rerank <= 3; rerank += 3) {
            qf_search_opts o = { .db_path = db, .text = texts[t], .k = 4, .rerank = rerank };
            qf_search_result a, b;
            CU_ASSERT_FATAL(qf_search_run(&o, &a) == QF_OK);
            CU_ASSERT_FATAL(qf_search_env_run(&env, &o, &b) == QF_OK);
            CU_ASSERT_EQUAL(a.n, 4);
            same_results(&a, &b);
            CU_ASSERT_STRING_EQUAL(a.rerank_src, b.rerank_src);
            qf_search_result_free(&a);
            qf_search_result_free(&b);
        }
    }
    /* an image: from its file, and from its bytes in memory */
    char path[4200];
    snprintf(path, sizeof path, "%s/photo_72x56.jpg", corpus);
    char *bytes = NULL;
    size_t n = 0;
    CU_ASSERT_FATAL(qf_read_file(path, 1 << 20, &bytes, &n) == QF_OK);
    qf_search_opts of = { .db_path = db, .image_path = path, .k = 6 };
    qf_search_opts om = { .image_path = "upload", .image_data = bytes, .image_len = n, .k = 6 };
    qf_search_result a, b;
    CU_ASSERT_FATAL(qf_search_run(&of, &a) == QF_OK);
    CU_ASSERT_FATAL(qf_search_env_run(&env, &om, &b) == QF_OK);
    same_results(&a, &b);
    CU_ASSERT(a.n == 6 && !strcmp(a.hits[0].path, path));   /* an image's best match is itself */
    qf_search_result_free(&a);
    qf_search_result_free(&b);
    /* bytes that are not an image: an error naming the upload */
    om.image_len = 10;
    memcpy(bytes, "not an img", 10);
    CU_ASSERT(qf_search_env_run(&env, &om, &b) == QF_ERR_FORMAT);
    CU_ASSERT(strstr(qf_last_error(), "upload") != NULL);
    /* no readable FAISS file: the same answer, exact, from the stored features */
    qf_search_opts ot = { .text = "a dog", .k = 3 };
    CU_ASSERT_FATAL(qf_search_env_run(&env, &ot, &a) == QF_OK);
    const qf_vindex *vi_kept = env.vi;
    env.vi = NULL;
    CU_ASSERT(qf_search_env_run(&env, &ot, &b) == QF_OK && b.n == 3);
    same_results(&a, &b);
    env.vi = vi_kept;
    qf_search_result_free(&a);
    qf_search_result_free(&b);
    env.vi = NULL;
    /* text without a tokenizer, caption without a captioner: argument errors */
    env.tok = NULL;
    CU_ASSERT(qf_search_env_run(&env, &ot, &b) == QF_ERR_ARG);
    env.tok = tok;
    ot.caption = 1;
    CU_ASSERT(qf_search_env_run(&env, &ot, &b) == QF_ERR_ARG);

    qf_free(bytes);
    qf_free(faiss);
    qf_vindex_free(vi);
    qf_bert_free(tok);
    qf_blip2_state_free(bs);
    qf_blip2_free(m);
    qf_store_close(st);
}

static void test_start_errors(void) {
    build_index();
    qf_server *sv = NULL;
    qf_serve_opts o = { .db_path = db, .host = "localhost", .threads = 1 };
    CU_ASSERT(qf_serve_start(&o, &sv) == QF_ERR_ARG && sv == NULL);
    CU_ASSERT(strstr(qf_last_error(), "'localhost' is not a numeric") != NULL);
    o.host = NULL;
    o.port = 70000;
    CU_ASSERT(qf_serve_start(&o, &sv) == QF_ERR_ARG);
    o.port = 0;
    o.db_path = "/nonexistent/x.db";
    CU_ASSERT(qf_serve_start(&o, &sv) == QF_ERR_IO);
    CU_ASSERT(strstr(qf_last_error(), "/nonexistent/x.db") != NULL);
    /* a busy port */
    o.db_path = db;
    qf_server *a = NULL;
    CU_ASSERT_FATAL(qf_serve_start(&o, &a) == QF_OK);
    o.port = qf_serve_port(a);
    CU_ASSERT(qf_serve_start(&o, &sv) == QF_ERR_IO && sv == NULL);
    CU_ASSERT(strstr(qf_last_error(), "cannot listen on 127.0.0.1 port") != NULL);
    qf_serve_stop(a, 5);
    qf_serve_stop(NULL, 0);
}

/* One request on a raw socket; the whole answer (the server closes). */
static char *http(int port, const char *req) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return NULL; }
    CU_ASSERT(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    ssize_t r;
    while (len < cap && (r = read(fd, buf + len, cap - len)) > 0) len += (size_t)r;
    buf[len] = 0;
    close(fd);
    return buf;
}

static void test_http(void) {
    build_index();
    qf_server *sv = NULL;
    qf_serve_opts o = { .db_path = db, .threads = 2 };
    CU_ASSERT_FATAL(qf_serve_start(&o, &sv) == QF_OK);
    int port = qf_serve_port(sv);
    CU_ASSERT(port > 0);
    char *r = http(port, "GET /api/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(!strncmp(r, "HTTP/1.1 200", 12) && strstr(r, "\"server\": {") && strstr(r, "\"ok\": 6"));
    free(r);
    r = http(port, "GET /api/search?q=a+dog&k=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    CU_ASSERT(r && !strncmp(r, "HTTP/1.1 200", 12) && strstr(r, "\"query\": \"a dog\"") && strstr(r, "\"rank\": 2,"));
    free(r);
    r = http(port, "PUT /api/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    CU_ASSERT(r && !strncmp(r, "HTTP/1.1 405", 12) && strstr(r, "Allow: GET, HEAD, POST"));
    free(r);
    r = http(port, "GET /api/caption/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    CU_ASSERT(r && !strncmp(r, "HTTP/1.1 404", 12) && strstr(r, "no captioning model"));
    free(r);
    qf_serve_stop(sv, 5);
    CU_ASSERT(http(port, "GET / HTTP/1.1\r\n\r\n") == NULL);   /* stopped: refused */
}

int main(void) {
    CU_TestInfo tests[] = {
        { "env_run_equals_run", test_env_run_equals_run },
        { "start_errors", test_start_errors },
        { "http", test_http },
        CU_TEST_INFO_NULL,
    };
    return qf_test_main("serve", tests);
}
