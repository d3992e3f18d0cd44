/* test_scan.c - corpus scanning: recursion, sorting, candidates by magic or
 * extension, symlink loops, @LIST files, duplicates, missing paths. */
#include "index/scan.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[512];

static void put(const char *rel, const void *data, size_t n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "wb");
    CU_ASSERT_FATAL(f != NULL);
    fwrite(data, 1, n, f);
    fclose(f);
}

static void build_tree(void) {
    static const unsigned char png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0 };
    static const unsigned char jpg[] = { 0xff, 0xd8, 0xff, 0xe0, 0, 0x10 };
    snprintf(root, sizeof root, "%s/corpus", qf_test_tmpdir());
    char p[1024];
    mkdir(root, 0755);
    snprintf(p, sizeof p, "%s/b", root); mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/a", root); mkdir(p, 0755);
    put("b/z.png", png, sizeof png);
    put("a/y.JPG", "not a jpeg", 10);         /* candidate by extension */
    put("a/noext", jpg, sizeof jpg);          /* candidate by magic      */
    put("a/notes.txt", "hello", 5);           /* ignored                 */
    put("a/empty.png", "", 0);                /* candidate, will fail to decode later */
    snprintf(p, sizeof p, "%s/a/loop", root);
    CU_ASSERT(symlink("..", p) == 0);         /* folder link: not followed */
    snprintf(p, sizeof p, "%s/a/link.png", root);
    CU_ASSERT(symlink("../b/z.png", p) == 0); /* file link: followed       */
}

static int find(const qf_scan *s, const char *suffix) {
    for (size_t i = 0; i < s->n_files; i++) {
        size_t n = strlen(s->files[i].path), m = strlen(suffix);
        if (n >= m && !strcmp(s->files[i].path + n - m, suffix)) return (int)i;
    }
    return -1;
}

static void test_walk(void) {
    build_tree();
    qf_scan s;
    const char *roots[] = { root };
    CU_ASSERT_FATAL(qf_scan_run(roots, 1, &s) == QF_OK);
    CU_ASSERT_EQUAL(s.n_files, 5);
    CU_ASSERT(find(&s, "/a/y.JPG") >= 0);
    CU_ASSERT(find(&s, "/a/noext") >= 0);
    CU_ASSERT(find(&s, "/a/empty.png") >= 0);
    CU_ASSERT(find(&s, "/a/link.png") >= 0);
    CU_ASSERT(find(&s, "/b/z.png") >= 0);
    CU_ASSERT(find(&s, "notes.txt") < 0);
    for (size_t i = 1; i < s.n_files; i++) CU_ASSERT(strcmp(s.files[i - 1].path, s.files[i].path) < 0);
    CU_ASSERT(s.files[0].path[0] == '/');     /* absolute */
    int z = find(&s, "/b/z.png");
    CU_ASSERT(s.files[z].size == 10 && s.files[z].mtime_ns > 0);
    CU_ASSERT_EQUAL(s.n_errors, 0);
    qf_scan_free(&s);
}

static void test_list_dups_missing(void) {
    char list[1024], line[2200];
    snprintf(list, sizeof list, "%s/list.txt", qf_test_tmpdir());
    FILE *f = fopen(list, "w");
    CU_ASSERT_FATAL(f != NULL);
    snprintf(line, sizeof line, "%s/b/z.png\r\n\n%s/a/notes.txt\n%s/missing.png\n", root, root, root);
    fputs(line, f);
    fclose(f);
    char at[1100];
    snprintf(at, sizeof at, "@%s", list);
    const char *roots[] = { at, root };
    qf_scan s;
    CU_ASSERT_FATAL(qf_scan_run(roots, 2, &s) == QF_OK);
    /* listed files are taken as given (notes.txt too: the user named it), z.png once */
    CU_ASSERT_EQUAL(s.n_files, 6);
    CU_ASSERT(find(&s, "notes.txt") >= 0);
    CU_ASSERT_EQUAL(s.n_errors, 1);
    CU_ASSERT(strstr(s.errors[0].path, "missing.png") != NULL);
    CU_ASSERT(strstr(s.errors[0].error, "No such file") != NULL);
    qf_scan_free(&s);
    const char *bad[] = { "@/nonexistent/list" };
    CU_ASSERT_EQUAL(qf_scan_run(bad, 1, &s), QF_ERR_IO);
    CU_ASSERT(strstr(qf_last_error(), "/nonexistent/list") != NULL);
}

static void test_ext(void) {
    CU_ASSERT(qf_scan_has_image_ext("a.jpeg"));
    CU_ASSERT(qf_scan_has_image_ext("A.PNG"));
    CU_ASSERT(!qf_scan_has_image_ext(".png"));
    CU_ASSERT(!qf_scan_has_image_ext("png"));
    CU_ASSERT(!qf_scan_has_image_ext("a.png.txt"));
}

static CU_TestInfo tests[] = {
    { "walk", test_walk },
    { "list_dups_missing", test_list_dups_missing },
    { "extensions", test_ext },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("scan", tests); }
