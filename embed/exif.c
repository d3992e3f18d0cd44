/* exif.c - EXIF Orientation with Pillow 9.4's parsing rules (see exif.h).
 *
 * Pillow (Image.Exif.load -> TiffImagePlugin.ImageFileDirectory_v2.load):
 *   header: "II*\0", "MM\0*", and the byte-swapped "MM*\0", "II\0*" are
 *           accepted; the first two bytes give the byte order; the IFD0
 *           offset follows (anywhere in the buffer, even inside the header);
 *   entries: read in order, 12 bytes each; an unknown field type is skipped;
 *           data of more than 4 bytes is read at its offset and, when that
 *           read runs past the end, the whole IFD load stops (entries read so
 *           far are kept); count 0 is skipped; a truncated entry table stops
 *           the load too;
 *   value:  Orientation has length 1 in TiffTags, so the first value of the
 *           entry is the tag's value; exif_transpose looks it up in a dict
 *           keyed 2..8, so any numeric type equal to an integer 2..8 acts
 *           (SHORT 6, LONG 6, RATIONAL 12/2, DOUBLE 6.0, ...), while BYTE,
 *           ASCII and UNDEFINED values are bytes/strings and never do. */
#include "embed/exif.h"

#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *b;
    size_t         n;
    int            le;
} tiff;

static int rd16(const tiff *t, size_t off, uint32_t *v) {
    if (off > t->n || t->n - off < 2) return 0;
    const uint8_t *p = t->b + off;
    *v = t->le ? (uint32_t)(p[0] | p[1] << 8) : (uint32_t)(p[0] << 8 | p[1]);
    return 1;
}

static int rd32(const tiff *t, size_t off, uint32_t *v) {
    if (off > t->n || t->n - off < 4) return 0;
    const uint8_t *p = t->b + off;
    *v = t->le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
               : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
    return 1;
}

static uint64_t rd64(const tiff *t, const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[t->le ? i : 7 - i] << (8 * i);
    return v;
}

/* Bytes per value of the field types Pillow's IFD loader knows; 0: unknown
 * (the entry is skipped). */
static unsigned type_size(uint32_t type) {
    switch (type) {
    case 1: case 2: case 6: case 7: return 1;     /* BYTE ASCII SBYTE UNDEFINED */
    case 3: case 8:                 return 2;     /* SHORT SSHORT               */
    case 4: case 9: case 11: case 13: return 4;   /* LONG SLONG FLOAT IFD       */
    case 5: case 10: case 12: case 16: case 17: case 18: return 8;
                                  /* RATIONAL SRATIONAL DOUBLE LONG8 SLONG8 IFD8 */
    default:                        return 0;
    }
}

/* First value of an Orientation entry as Pillow would compare it with 2..8:
 * the integer it equals, or 0 when it equals none (or is not a number). */
static int first_value(const tiff *t, uint32_t type, const uint8_t *p) {
    uint32_t u;
    switch (type) {
    case 3: u = t->le ? (uint32_t)(p[0] | p[1] << 8) : (uint32_t)(p[0] << 8 | p[1]); return u <= 8 ? (int)u : 0;
    case 8: {
        uint32_t v = t->le ? (uint32_t)(p[0] | p[1] << 8) : (uint32_t)(p[0] << 8 | p[1]);
        int16_t s = (int16_t)(uint16_t)v;
        return s >= 0 && s <= 8 ? s : 0;
    }
    case 6: return (int8_t)p[0] >= 0 && (int8_t)p[0] <= 8 ? (int8_t)p[0] : 0;
    case 4: case 9: case 13: {
        tiff tt = { p, 4, t->le };
        rd32(&tt, 0, &u);
        if (type == 9 && (int32_t)u < 0) return 0;
        return u <= 8 ? (int)u : 0;
    }
    case 16: case 17: case 18: {
        uint64_t v = rd64(t, p);
        if (type == 17 && (int64_t)v < 0) return 0;
        return v <= 8 ? (int)v : 0;
    }
    case 5: case 10: {                     /* IFDRational: num / den, den 0 is NaN */
        tiff tt = { p, 8, t->le };
        uint32_t num, den;
        rd32(&tt, 0, &num);
        rd32(&tt, 4, &den);
        if (type == 5) {
            if (den == 0 || num % den) return 0;
            return num / den <= 8 ? (int)(num / den) : 0;
        }
        int64_t sn = (int32_t)num, sd = (int32_t)den;
        if (sd == 0 || sn % sd) return 0;
        int64_t q = sn / sd;
        return q >= 0 && q <= 8 ? (int)q : 0;
    }
    case 11: {
        tiff tt = { p, 4, t->le };
        rd32(&tt, 0, &u);
        float f;
        memcpy(&f, &u, 4);
        for (int k = 0; k <= 8; k++) if (f == (float)k) return k;
        return 0;
    }
    case 12: {
        uint64_t v = rd64(t, p);
        double d;
        memcpy(&d, &v, 8);
        for (int k = 0; k <= 8; k++) if (d == (double)k) return k;
        return 0;
    }
    default: return 0;                     /* bytes / strings */
    }
}

int qf_exif_orientation(const void *buf, size_t n) {
    tiff t = { buf, n, 0 };
    if (!buf) return 0;
    if (t.n >= 6 && memcmp(t.b, "Exif\0\0", 6) == 0) { t.b += 6; t.n -= 6; }
    if (t.n < 8) return 0;
    if (memcmp(t.b, "II*\0", 4) == 0 || memcmp(t.b, "II\0*", 4) == 0) t.le = 1;
    else if (memcmp(t.b, "MM\0*", 4) == 0 || memcmp(t.b, "MM*\0", 4) == 0) t.le = 0;
    else return 0;
    uint32_t ifd, count;
    rd32(&t, 4, &ifd);
    if (!rd16(&t, ifd, &count)) return 0;
    int orientation = 0;
    for (uint32_t i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        uint32_t tag, type, cnt;
        if (!rd16(&t, e, &tag) || !rd16(&t, e + 2, &type) || !rd32(&t, e + 4, &cnt) ||
            t.n - e < 12)
            break;                                  /* truncated entry table */
        unsigned us = type_size(type);
        if (!us) continue;                          /* unknown type: skipped */
        uint64_t size = (uint64_t)cnt * us;
        const uint8_t *data = t.b + e + 8;
        if (size > 4) {
            uint32_t off;
            rd32(&t, e + 8, &off);
            if (off > t.n || t.n - off < size) break;   /* Pillow stops the IFD here */
            data = t.b + off;
        }
        if (size == 0) continue;
        if (tag == 0x0112) orientation = first_value(&t, type, data);
    }
    return orientation >= 1 && orientation <= 8 ? orientation : 0;
}

const char *qf_exif_orientation_name(int o) {
    static const char *const names[] = {
        "none", "1 (normal)", "2 (mirrored left-right)", "3 (rotated 180)",
        "4 (mirrored top-bottom)", "5 (transposed)", "6 (rotated 90 clockwise)",
        "7 (transversed)", "8 (rotated 90 counter-clockwise)",
    };
    return o >= 0 && o <= 8 ? names[o] : names[0];
}
