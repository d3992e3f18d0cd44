/* report.c - result rendering (see report.h). JSON written here (file
 * names are bytes, not always UTF-8: see qf_report_json), HTML
 * thumbnails resized with the PIL-exact bicubic resize and encoded with
 * libjpeg-turbo, base64 through OpenSSL's EVP_EncodeBlock. */
#include "query/report.h"

#include "embed/image.h"
#include "index/export.h"

#include <jpeglib.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

/* A JSON number as jansson writes json_real with JSON_REAL_PRECISION(9):
 * "%.9g", a ".0" when that looks like an integer, no '+' or leading zeros
 * in the exponent; null for NaN/inf (jansson refused those: key missing). */
static void json_number(FILE *f, double v) {
    char buf[64], out[64];
    if (!isfinite(v)) { fputs("null", f); return; }
    snprintf(buf, sizeof buf, "%.9g", v);
    if (!strpbrk(buf, ".eE")) strcat(buf, ".0");
    char *e = strchr(buf, 'e');
    if (e) {
        size_t n = (size_t)(e - buf) + 1;
        memcpy(out, buf, n);
        const char *x = e + 1;
        if (*x == '+') x++;
        else if (*x == '-') out[n++] = *x++;
        while (*x == '0' && x[1]) x++;
        snprintf(out + n, sizeof out - n, "%s", x);
        fputs(out, f);
    } else {
        fputs(buf, f);
    }
}

/* Written by hand, in jansson's JSON_INDENT(2) layout, rather than with
 * jansson: jansson refuses strings that are not UTF-8 and the key then went
 * missing from the output (a hit whose file name is b"caf\xe9.png" had no
 * "path"; a non-UTF-8 query no "query"). Strings go through
 * qf_export_json_string: undecodable bytes as "\udcXX" (surrogateescape). */
qf_status qf_report_json(FILE *f, const qf_report_info *info, const qf_hit *hits, int n) {
    fputs("{\n  \"query\": ", f);
    qf_export_json_string(f, info->query ? info->query : "");
    fputs(",\n  \"results\": [", f);
    for (int i = 0; i < n; i++) {
        const qf_hit *h = &hits[i];
        fprintf(f, "%s\n    {\n      \"rank\": %d,\n      \"id\": %lld,\n      \"path\": ", i ? "," : "", i + 1,
                (long long)h->id);
        qf_export_json_string(f, h->path);
        fputs(",\n      \"itc\": ", f);
        json_number(f, h->itc);
        fputs(",\n      \"itm\": ", f);
        if (h->has_itm) json_number(f, h->itm);
        else fputs("null", f);
        fputs(",\n      \"score\": ", f);
        json_number(f, h->score);
        fputs(",\n      \"caption\": ", f);
        if (h->caption) qf_export_json_string(f, h->caption);
        else fputs("null", f);
        fputs("\n    }", f);
    }
    fputs(n ? "\n  ]" : "]", f);
    if (info->mode) { fputs(",\n  \"mode\": ", f); qf_export_json_string(f, info->mode); }
    if (info->rerank_src) { fputs(",\n  \"rerank_vision\": ", f); qf_export_json_string(f, info->rerank_src); }
    fputs("\n}\n", f);
    return ferror(f) ? qf_errorf(QF_ERR_IO, "cannot write the JSON report") : QF_OK;
}

/* Text for a terminal: control characters and bytes that are not UTF-8 as
 * \xHH, so a hostile file name can neither break a table row (newline)
 * nor send escape sequences to the terminal. */
static void put_display(FILE *f, const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    while (s < end && *s) {
        size_t n = qf_utf8_len((const char *)s);
        if (n == 0 || *s < 0x20 || *s == 0x7f || s + n > end) {
            fprintf(f, "\\x%02x", *s++);
        } else {
            fwrite(s, 1, n, f);
            s += n;
        }
    }
}

qf_status qf_report_table(FILE *f, const qf_report_info *info, const qf_hit *hits, int n) {
    int has_itm = 0, has_cap = 0;
    for (int i = 0; i < n; i++) { has_itm |= hits[i].has_itm; has_cap |= hits[i].caption != NULL; }
    fputs("query: ", f);
    put_display(f, info->query, strlen(info->query));
    fprintf(f, "   (%s%s%s)\n", info->mode ? info->mode : "exact",
            info->rerank_src ? ", ITM vision features: " : "", info->rerank_src ? info->rerank_src : "");
    fprintf(f, "%4s  %8s  %8s", "rank", "score", "itc");
    if (has_itm) fprintf(f, "  %8s", "itm");
    fprintf(f, "  %s\n", "path");
    for (int i = 0; i < n; i++) {
        const qf_hit *h = &hits[i];
        fprintf(f, "%4d  %8.4f  %8.4f", i + 1, h->score, h->itc);
        if (has_itm) {
            if (h->has_itm) fprintf(f, "  %8.4f", h->itm);
            else fprintf(f, "  %8s", "-");
        }
        fputs("  ", f);
        put_display(f, h->path, strlen(h->path));
        fputc('\n', f);
        if (has_cap && h->caption) {
            /* caption on its own indented line, trimmed */
            const char *c = h->caption;
            while (*c == ' ' || *c == '\n') c++;
            size_t len = strlen(c);
            while (len && (c[len - 1] == '\n' || c[len - 1] == ' ')) len--;
            fputs("      \"", f);
            put_display(f, c, len);
            fputs("\"\n", f);
        }
    }
    if (n == 0) fprintf(f, "(no results)\n");
    return ferror(f) ? qf_errorf(QF_ERR_IO, "cannot write the report") : QF_OK;
}

/* HTML text: markup characters as entities; control characters and bytes
 * that are not UTF-8 (a file name b"caf\xe9.png") as the visible text \xHH,
 * so the page stays valid UTF-8 whatever the names. */
static void html_escape(FILE *f, const char *str) {
    for (const unsigned char *s = (const unsigned char *)str; *s;) {
        size_t n = qf_utf8_len((const char *)s);
        switch (n == 1 ? *s : 0) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            if (n == 0 || (*s < 0x20 && *s != '\n' && *s != '\t') || *s == 0x7f) { fprintf(f, "\\x%02x", *s); n = 1; }
            else fwrite(s, 1, n, f);
        }
        s += n;
    }
}

/* The image at path as a JPEG thumbnail, longest side px (*jpeg
 * qf_malloc'd, *len bytes). Decoded by qf_img_load like the embedding, so the
 * EXIF orientation is applied here too and the (EXIF-free) thumbnail shows
 * what the model saw, not what a browser makes of the original file. */
qf_status qf_report_thumb_jpeg(const char *path, int px, unsigned char **jpeg, size_t *len) {
    *jpeg = NULL;
    *len = 0;
    qf_img img = { 0 }, small = { 0 };
    qf_status s = qf_img_load(path, NULL, &img);
    if (s) return s;
    int w = img.w, h = img.h;
    if (w > px || h > px) {
        double k = (double)px / (w > h ? w : h);
        w = (int)lround(w * k); h = (int)lround(h * k);
        if (w < 1) w = 1;
        if (h < 1) h = 1;
    }
    if ((s = qf_img_resize_bicubic(&img, w, h, &small))) { qf_img_free(&img); return s; }
    qf_img_free(&img);

    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    unsigned char *jpg = NULL;
    unsigned long jpg_len = 0;
    cinfo.err = jpeg_std_error(&jerr);   /* encoding our own buffer cannot hit bad input */
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &jpg, &jpg_len);
    cinfo.image_width = (JDIMENSION)small.w;
    cinfo.image_height = (JDIMENSION)small.h;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 85, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = small.rgb + (size_t)cinfo.next_scanline * small.w * 3;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    qf_img_free(&small);
    /* libjpeg malloc'd the buffer: copy it behind the allocation seam */
    *jpeg = qf_malloc(jpg_len ? jpg_len : 1);
    if (!*jpeg) { free(jpg); return qf_errorf(QF_ERR_NOMEM, "out of memory encoding a thumbnail"); }
    memcpy(*jpeg, jpg, jpg_len);
    *len = jpg_len;
    free(jpg);
    return QF_OK;
}

/* Thumbnail of the image at path, longest side px, as a JPEG data URI
 * (qf_malloc'd). */
static qf_status thumbnail(const char *path, int px, char **uri) {
    *uri = NULL;
    unsigned char *jpg = NULL;
    size_t jpg_len = 0;
    qf_status s = qf_report_thumb_jpeg(path, px, &jpg, &jpg_len);
    if (s) return s;
    static const char prefix[] = "data:image/jpeg;base64,";
    size_t b64 = 4 * ((jpg_len + 2) / 3);
    char *out = qf_malloc(sizeof prefix + b64 + 1);
    if (!out) { qf_free(jpg); return qf_errorf(QF_ERR_NOMEM, "out of memory encoding a thumbnail"); }
    memcpy(out, prefix, sizeof prefix - 1);
    EVP_EncodeBlock((unsigned char *)out + sizeof prefix - 1, jpg, (int)jpg_len);
    qf_free(jpg);
    *uri = out;
    return QF_OK;
}

static const char html_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>qformer search</title>\n<style>\n"
    "body{font-family:system-ui,sans-serif;margin:2rem;background:#fafafa;color:#222}\n"
    "h1{font-size:1.3rem} .meta{color:#666;margin-bottom:1.5rem}\n"
    ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:1rem}\n"
    ".card{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:.6rem}\n"
    ".card img{width:100%;height:200px;object-fit:contain;background:#eee;border-radius:4px}\n"
    ".rank{font-weight:bold} .scores{font-family:monospace;font-size:.85rem;color:#444}\n"
    ".path{font-size:.75rem;color:#777;word-break:break-all} .caption{font-style:italic;margin:.3rem 0}\n"
    ".missing{height:200px;display:flex;align-items:center;justify-content:center;background:#eee;"
    "color:#a00;font-size:.8rem;padding:.5rem;border-radius:4px}\n"
    "</style></head><body>\n";

qf_status qf_report_html(FILE *f, const qf_report_info *info, const qf_hit *hits, int n) {
    fputs(html_head, f);
    fputs("<h1>", f); html_escape(f, info->query); fputs("</h1>\n<div class=\"meta\">", f);
    fprintf(f, "%d result%s &middot; ", n, n == 1 ? "" : "s");
    html_escape(f, info->mode ? info->mode : "exact");
    if (info->rerank_src) { fputs(" &middot; ITM vision features: ", f); html_escape(f, info->rerank_src); }
    fputs("</div>\n<div class=\"grid\">\n", f);
    int px = info->thumb_px > 0 ? info->thumb_px : 320;
    for (int i = 0; i < n; i++) {
        const qf_hit *h = &hits[i];
        fprintf(f, "<div class=\"card\" data-rank=\"%d\" data-id=\"%lld\">\n", i + 1, (long long)h->id);
        char *uri = NULL;
        qf_status s = thumbnail(h->path, px, &uri);
        if (s) {
            fputs("<div class=\"missing\">", f); html_escape(f, qf_last_error()); fputs("</div>\n", f);
        } else {
            /* onload marks the card so a headless browser can tell the image decoded */
            fputs("<img alt=\"", f); html_escape(f, h->path);
            fprintf(f, "\" onload=\"this.dataset.loaded=1\" src=\"%s\">\n", uri);
            qf_free(uri);
        }
        fprintf(f, "<div><span class=\"rank\">#%d</span> <span class=\"scores\">score %.4f &middot; itc %.4f",
                i + 1, h->score, h->itc);
        if (h->has_itm) fprintf(f, " &middot; itm %.4f", h->itm);
        fputs("</span></div>\n", f);
        if (h->caption) {
            fputs("<div class=\"caption\">", f); html_escape(f, h->caption); fputs("</div>\n", f);
        }
        fputs("<div class=\"path\">", f); html_escape(f, h->path); fputs("</div>\n</div>\n", f);
    }
    fputs("</div>\n</body></html>\n", f);
    return ferror(f) ? qf_errorf(QF_ERR_IO, "cannot write the HTML report") : QF_OK;
}
