/* utf8.h: strict UTF-8 (RFC 3629): no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing past U+10FFFF. */
#ifndef GT_UTF8_H
#define GT_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decode the code point at s[*i, n) (*i < n) into *cp and advance *i past
 * it; -1 (nothing changed but *cp) when the bytes there are not UTF-8. */
int gt_utf8_next(const unsigned char *s, size_t n, size_t *i, uint32_t *cp);
/* Encode cp (a valid code point) at o; returns its 1..4 bytes. */
size_t gt_utf8_put(unsigned char *o, uint32_t cp);
/* Whether s[0, n) is UTF-8 throughout. */
int gt_utf8_valid(const unsigned char *s, size_t n);

#endif
