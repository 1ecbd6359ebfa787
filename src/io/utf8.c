/* utf8.c: see utf8.h. A lead byte gives the sequence length (110xxxxx 2,
 * 1110xxxx 3, 11110xxx 4); continuation bytes are 10xxxxxx. */
#include "io/utf8.h"

int gt_utf8_next(const unsigned char *s, size_t n, size_t *i, uint32_t *cp) {
  unsigned char c = s[*i];
  size_t len;
  uint32_t min;
  if (c < 0x80) {
    *cp = c;
    *i += 1;
    return 0;
  }
  if ((c & 0xE0) == 0xC0) len = 2, *cp = c & 0x1Fu, min = 0x80;
  else if ((c & 0xF0) == 0xE0) len = 3, *cp = c & 0x0Fu, min = 0x800;
  else if ((c & 0xF8) == 0xF0) len = 4, *cp = c & 0x07u, min = 0x10000;
  else return -1;
  if (n - *i < len) return -1;
  for (size_t k = 1; k < len; k++) {
    unsigned char b = s[*i + k];
    if ((b & 0xC0) != 0x80) return -1;
    *cp = *cp << 6 | (b & 0x3Fu);
  }
  if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
    return -1;
  *i += len;
  return 0;
}

size_t gt_utf8_put(unsigned char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xC0 | cp >> 6);
    o[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xE0 | cp >> 12);
    o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (unsigned char)(0xF0 | cp >> 18);
  o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

int gt_utf8_valid(const unsigned char *s, size_t n) {
  uint32_t cp;
  for (size_t i = 0; i < n;)
    if (gt_utf8_next(s, n, &i, &cp) != 0) return 0;
  return 1;
}
