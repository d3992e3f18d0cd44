/* exif.h - the EXIF Orientation tag (0x0112) of an image, read as Pillow
 * 9.4's Image.getexif() reads it, so that the pixels match
 * ImageOps.exif_transpose: JPEG APP1 "Exif\0\0" payloads, PNG eXIf chunks,
 * WebP EXIF chunks and whole TIFF files all hold a TIFF structure (header +
 * IFD0); only IFD0 is read. The parser never allocates and reads only
 * inside [buf, buf + n). */
#ifndef QF_EXIF_H
#define QF_EXIF_H

#include <stddef.h>

/* Orientation of a TIFF structure (an optional "Exif\0\0" prefix is
 * skipped): 1..8, or 0 when there is none Pillow would act on (no tag, a
 * value outside 1..8, a non-numeric type, a malformed header, or an entry
 * before the tag whose data lies outside the buffer: Pillow stops reading
 * the IFD there). When the tag appears twice the last one counts; with a
 * count above 1 the first value counts (both as in Pillow). `buf` is
 * borrowed for the call. */
int qf_exif_orientation(const void *buf, size_t n);

/* "TopLeft (normal)", "RightTop (rotate 90 CW)", ... for messages; "none"
 * for 0 and out-of-range values. */
const char *qf_exif_orientation_name(int orientation);

#endif
