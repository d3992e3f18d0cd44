/* cmd_embed.c - `qformer embed`: ITC image/text features, ITC scores and
 * optionally ITM logits and intermediate tensors, written to a safetensors
 * file whose names, dtypes and shapes are those of the fixtures'
 * expected.safetensors (the command-line contract of DESIGN.md). */
#include "cli.h"

#include "embed/bert.h"
#include "embed/blip2.h"
#include "embed/hub.h"
#include "embed/image.h"
#include "embed/safetensors.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: qformer embed --model DIR [--image PATH]... [--text STR]... [--itm]\n"
    "                     [--intermediates] [--dtype f32|bf16] --out FILE.safetensors\n"
    "\n"
    "Runs the BLIP-2 retrieval model on each image and text and writes:\n"
    "  image_feats [n_img,Q,E]  text_input_ids, text_attention_mask [n_txt,32]\n"
    "  text_feats [n_txt,E]     itc_scores [n_img,n_txt] (max over queries)\n"
    "  with --itm:           itm_logits [n_img,n_txt,2], itm_scores [n_img,n_txt]\n"
    "  with --intermediates: pixel_values, resized_u8, vision_last_hidden_state,\n"
    "                        qformer_last_hidden_state, text_qformer_last_hidden_state\n"
    "Image i is the i-th --image, text t the t-th --text (at most 12 of each).\n"
    "\n"
    "  --model DIR       retrieval checkpoint (Salesforce/blip2-itm-vit-g layout)\n"
    "  --image PATH      a PNG or JPEG image; repeat for more\n"
    "  --text STR        a text; repeat for more\n"
    "  --itm             also the ITM head on every (image, text) pair\n"
    "  --intermediates   also the inputs and hidden states, for debugging\n"
    "  --dtype T         ViT arithmetic: f32 (default: the reference, exact to HF) or bf16\n"
    "                    (BF16 weights and GEMM inputs, float32 accumulation; features\n"
    "                    within ~2e-3; faster only on CPUs with AVX512_BF16)\n"
    "  --out FILE        the safetensors file to write\n"
    "\n"
    "examples:\n"
    "  qformer embed --model blip2-itm-vit-g --image cat.jpg --text 'a cat' --itm --out cat.safetensors\n"
    "  qformer embed --model Salesforce/blip2-itm-vit-g --image a.jpg --image b.png \\\n"
    "                --text 'a dog' --text 'a red car' --out pairs.safetensors\n";

#define MAX_ITEMS 12

int qf_cmd_embed(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "image", required_argument, 0, 'i' },
        { "text", required_argument, 0, 't' },  { "itm", no_argument, 0, 'I' },
        { "intermediates", no_argument, 0, 'X' }, { "out", required_argument, 0, 'o' },
        { "dtype", required_argument, 0, 'd' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    const char *model_dir = NULL, *out_path = NULL;
    const char **images = calloc((size_t)argc + 1, sizeof *images);
    const char **texts = calloc((size_t)argc + 1, sizeof *texts);
    int n_img = 0, n_txt = 0, do_itm = 0, inter = 0, bf16 = 0, c, rc = 1;
    if (!images || !texts) { fprintf(stderr, "qformer embed: out of memory\n"); return 1; }
    optind = 1;
    opterr = 0;       /* qf_cli_bad_option says what is wrong */
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'i': images[n_img++] = optarg; break;
        case 't': texts[n_txt++] = optarg; break;
        case 'I': do_itm = 1; break;
        case 'X': inter = 1; break;
        case 'o': out_path = optarg; break;
        case 'd':
            if (strcmp(optarg, "f32") && strcmp(optarg, "bf16")) {
                free(images); free(texts);
                return qf_cli_usage("embed", "--dtype must be f32 or bf16, not '%s'", optarg);
            }
            bf16 = !strcmp(optarg, "bf16");
            break;
        case 'h': fputs(usage_text, stdout); free(images); free(texts); return 0;
        default: free(images); free(texts); return qf_cli_bad_option("embed", argc, argv, "h", opts);
        }
    }
    if (optind < argc) {
        rc = qf_cli_usage("embed", "unexpected argument '%s'", argv[optind]);
        free(images); free(texts); return rc;
    }
    if (!model_dir || !out_path) {
        rc = qf_cli_usage("embed", "%s is required", !model_dir && !out_path ? "--model and --out are" :
                          !model_dir ? "--model" : "--out");
        free(images); free(texts); return rc;
    }
    if (!n_img && !n_txt) {
        rc = qf_cli_usage("embed", "nothing to embed: give --image PATH and/or --text STR");
        free(images); free(texts); return rc;
    }
    char model_buf[QF_HUB_PATH_MAX];   /* --model: a folder or a cached ORG/NAME */
    qf_status hs = qf_hub_resolve_model(model_dir, model_buf, sizeof model_buf);
    if (hs) { free(images); free(texts); return qf_cli_fail("embed", hs); }
    model_dir = model_buf;

    qf_blip2 *m = NULL;
    qf_blip2_state *s = NULL;
    qf_bert *tok = NULL;
    qf_img_preproc pp;
    qf_status st;
    float *pix = NULL, *vis = NULL, *qh = NULL, *feats = NULL, *tfeat = NULL, *thid = NULL;
    float *itc = NULL, *itm = NULL, *itm_p = NULL;
    uint8_t *resized = NULL;
    int64_t *ids = NULL, *mask = NULL;
    int *n_tok = NULL;

    if ((st = qf_blip2_load(model_dir, QF_BLIP2_ALL | (bf16 ? QF_BLIP2_VISION_BF16 : 0), &m)) ||
        (st = qf_img_preproc_load(model_dir, &pp)) ||
        (st = qf_bert_load(model_dir, &tok)) ||
        (st = qf_blip2_state_init(m, &s)))
        goto fail;
    const int S = qf_blip2_image_size(m), Nv = qf_blip2_n_vis(m), Dv = qf_blip2_vis_dim(m);
    const int Q = qf_blip2_n_query(m), Dq = qf_blip2_q_dim(m), E = qf_blip2_embed_dim(m);
    const int L = QF_BERT_MAX_TXT_LEN;
    if (pp.height != S || pp.width != S) {
        st = qf_errorf(QF_ERR_FORMAT, "%s: preprocessor size %dx%d differs from vision_config.image_size %d",
                       model_dir, pp.width, pp.height, S);
        goto fail;
    }
    size_t ni = (size_t)n_img, nt = (size_t)n_txt;
    pix = calloc(ni * 3 * S * S + 1, sizeof *pix);
    resized = calloc(ni * S * S * 3 + 1, 1);
    vis = calloc(ni * Nv * Dv + 1, sizeof *vis);
    qh = calloc(ni * Q * Dq + 1, sizeof *qh);
    feats = calloc(ni * Q * E + 1, sizeof *feats);
    tfeat = calloc(nt * E + 1, sizeof *tfeat);
    thid = calloc(nt * L * Dq + 1, sizeof *thid);
    itc = calloc(ni * nt + 1, sizeof *itc);
    itm = calloc(ni * nt * 2 + 1, sizeof *itm);
    itm_p = calloc(ni * nt + 1, sizeof *itm_p);
    ids = calloc(nt * L + 1, sizeof *ids);
    mask = calloc(nt * L + 1, sizeof *mask);
    n_tok = calloc(nt + 1, sizeof *n_tok);
    if (!pix || !resized || !vis || !qh || !feats || !tfeat || !thid || !itc || !itm || !itm_p ||
        !ids || !mask || !n_tok) {
        st = qf_errorf(QF_ERR_NOMEM, "out of memory for %d images and %d texts", n_img, n_txt);
        goto fail;
    }
    for (int i = 0; i < n_img; i++) {
        if ((st = qf_img_load_pixels(images[i], &pp, NULL, pix + (size_t)i * 3 * S * S,
                                     resized + (size_t)i * S * S * 3, NULL, NULL)))
            goto fail;
        if ((st = qf_blip2_image_feats(m, s, pix + (size_t)i * 3 * S * S, feats + (size_t)i * Q * E,
                                       vis + (size_t)i * Nv * Dv, qh + (size_t)i * Q * Dq))) {
            qf_error_prefix(st, "%s", images[i]);
            goto fail;
        }
    }
    for (int t = 0; t < n_txt; t++) {
        if ((st = qf_bert_encode(tok, texts[t], L, 1, ids + (size_t)t * L, mask + (size_t)t * L, &n_tok[t])) ||
            (st = qf_blip2_text_feat(m, s, ids + (size_t)t * L, mask + (size_t)t * L, L,
                                     tfeat + (size_t)t * E, thid + (size_t)t * L * Dq))) {
            qf_error_prefix(st, "text %d", t + 1);
            goto fail;
        }
    }
    for (int i = 0; i < n_img; i++)
        for (int t = 0; t < n_txt; t++) {
            itc[i * n_txt + t] = qf_blip2_itc_score(feats + (size_t)i * Q * E, Q, tfeat + (size_t)t * E, E);
            if (!do_itm) continue;
            float *lg = itm + ((size_t)i * n_txt + t) * 2;
            /* unpadded tokens: padding keys get exactly zero attention weight */
            if ((st = qf_blip2_itm(m, s, vis + (size_t)i * Nv * Dv, ids + (size_t)t * L,
                                   mask + (size_t)t * L, n_tok[t], lg)))
                goto fail;
            itm_p[i * n_txt + t] = 1.0f / (1.0f + expf(lg[0] - lg[1]));
        }

    int64_t sh_feats[] = { n_img, Q, E }, sh_ids[] = { n_txt, L }, sh_tf[] = { n_txt, E };
    int64_t sh_sc[] = { n_img, n_txt }, sh_itm[] = { n_img, n_txt, 2 }, sh_pix[] = { n_img, 3, S, S };
    int64_t sh_rs[] = { n_img, S, S, 3 }, sh_vis[] = { n_img, Nv, Dv }, sh_q[] = { n_img, Q, Dq };
    int64_t sh_th[] = { n_txt, L, Dq };
    qf_st_item items[MAX_ITEMS];
    size_t n = 0;
    items[n++] = (qf_st_item){ "image_feats", QF_DT_F32, 3, sh_feats, feats };
    items[n++] = (qf_st_item){ "text_input_ids", QF_DT_I64, 2, sh_ids, ids };
    items[n++] = (qf_st_item){ "text_attention_mask", QF_DT_I64, 2, sh_ids, mask };
    items[n++] = (qf_st_item){ "text_feats", QF_DT_F32, 2, sh_tf, tfeat };
    items[n++] = (qf_st_item){ "itc_scores", QF_DT_F32, 2, sh_sc, itc };
    if (do_itm) {
        items[n++] = (qf_st_item){ "itm_logits", QF_DT_F32, 3, sh_itm, itm };
        items[n++] = (qf_st_item){ "itm_scores", QF_DT_F32, 2, sh_sc, itm_p };
    }
    if (inter) {
        items[n++] = (qf_st_item){ "pixel_values", QF_DT_F32, 4, sh_pix, pix };
        items[n++] = (qf_st_item){ "resized_u8", QF_DT_U8, 4, sh_rs, resized };
        items[n++] = (qf_st_item){ "vision_last_hidden_state", QF_DT_F32, 3, sh_vis, vis };
        items[n++] = (qf_st_item){ "qformer_last_hidden_state", QF_DT_F32, 3, sh_q, qh };
        items[n++] = (qf_st_item){ "text_qformer_last_hidden_state", QF_DT_F32, 3, sh_th, thid };
    }
    const char *meta[] = { "format", "pt", "model_fingerprint", qf_blip2_fingerprint(m),
                           "vision_dtype", bf16 ? "bf16" : "f32", NULL };
    if ((st = qf_st_write(out_path, items, n, meta))) goto fail;
    rc = 0;
    goto done;
fail:
    rc = qf_cli_fail("embed", st);
done:
    free(pix); free(resized); free(vis); free(qh); free(feats); free(tfeat); free(thid);
    free(itc); free(itm); free(itm_p); free(ids); free(mask); free(n_tok);
    qf_blip2_state_free(s);
    qf_bert_free(tok);
    qf_blip2_free(m);
    free(images); free(texts);
    return rc;
}
