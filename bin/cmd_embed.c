/* cmd_embed.c - `qformer embed`: ITC image/text features, ITC scores and
 * optionally ITM logits and intermediate tensors, written to a safetensors
 * file whose names, dtypes and shapes are those of the fixtures'
 * expected.safetensors (the command-line contract in README.md). The
 * computation is embed/retrieval.h; this file parses, calls and writes. */
#include "cli.h"

#include "embed/hub.h"
#include "embed/retrieval.h"
#include "embed/safetensors.h"

#include <getopt.h>
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
    "Image i is the i-th --image, text t the t-th --text.\n"
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

/* Tensors in the output file at most (5 always, 2 with --itm, 5 with --intermediates). */
#define MAX_TENSORS 12

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
        default: free(images); free(texts); return 2;
        }
    }
    if (optind < argc) {
        rc = qf_cli_usage("embed", "unexpected argument '%s'", argv[optind]);
        free(images); free(texts); return rc;
    }
    if (!model_dir || !out_path) {
        rc = qf_cli_usage("embed", "--model and --out are required");
        free(images); free(texts); return rc;
    }
    char model_buf[QF_HUB_PATH_MAX];   /* --model: a folder or a cached ORG/NAME */
    qf_status hs = qf_hub_resolve_model(model_dir, model_buf, sizeof model_buf);
    if (hs) { free(images); free(texts); return qf_cli_fail("embed", hs); }
    model_dir = model_buf;

    qf_retrieval r;
    qf_status st = qf_retrieval_run(model_dir, images, n_img, texts, n_txt,
                                    (do_itm ? QF_RETRIEVAL_ITM : 0) | (bf16 ? QF_RETRIEVAL_VISION_BF16 : 0), &r);
    if (st) goto fail;
    const int64_t S = r.S, Q = r.Q, E = r.E, L = r.L;
    int64_t sh_feats[] = { n_img, Q, E }, sh_ids[] = { n_txt, L }, sh_tf[] = { n_txt, E };
    int64_t sh_sc[] = { n_img, n_txt }, sh_itm[] = { n_img, n_txt, 2 }, sh_pix[] = { n_img, 3, S, S };
    int64_t sh_rs[] = { n_img, S, S, 3 }, sh_vis[] = { n_img, r.Nv, r.Dv }, sh_q[] = { n_img, Q, r.Dq };
    int64_t sh_th[] = { n_txt, L, r.Dq };
    qf_st_item items[MAX_TENSORS];
    size_t n = 0;
    items[n++] = (qf_st_item){ "image_feats", QF_DT_F32, 3, sh_feats, r.image_feats };
    items[n++] = (qf_st_item){ "text_input_ids", QF_DT_I64, 2, sh_ids, r.input_ids };
    items[n++] = (qf_st_item){ "text_attention_mask", QF_DT_I64, 2, sh_ids, r.attention_mask };
    items[n++] = (qf_st_item){ "text_feats", QF_DT_F32, 2, sh_tf, r.text_feats };
    items[n++] = (qf_st_item){ "itc_scores", QF_DT_F32, 2, sh_sc, r.itc };
    if (do_itm) {
        items[n++] = (qf_st_item){ "itm_logits", QF_DT_F32, 3, sh_itm, r.itm_logits };
        items[n++] = (qf_st_item){ "itm_scores", QF_DT_F32, 2, sh_sc, r.itm_scores };
    }
    if (inter) {
        items[n++] = (qf_st_item){ "pixel_values", QF_DT_F32, 4, sh_pix, r.pixel_values };
        items[n++] = (qf_st_item){ "resized_u8", QF_DT_U8, 4, sh_rs, r.resized_u8 };
        items[n++] = (qf_st_item){ "vision_last_hidden_state", QF_DT_F32, 3, sh_vis, r.vision };
        items[n++] = (qf_st_item){ "qformer_last_hidden_state", QF_DT_F32, 3, sh_q, r.qformer };
        items[n++] = (qf_st_item){ "text_qformer_last_hidden_state", QF_DT_F32, 3, sh_th, r.text_hidden };
    }
    const char *meta[] = { "format", "pt", "model_fingerprint", r.fingerprint,
                           "vision_dtype", bf16 ? "bf16" : "f32", NULL };
    if ((st = qf_st_write(out_path, items, n, meta))) goto fail;
    rc = 0;
    goto done;
fail:
    rc = qf_cli_fail("embed", st);
done:
    qf_retrieval_free(&r);
    free(images); free(texts);
    return rc;
}
