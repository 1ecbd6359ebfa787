/* libFuzzer target: a TensorFlow.js model.json. The input is the JSON
 * text, written as model.json into a private folder that
 * LLVMFuzzerInitialize fills with a fixed set of small shards (the names
 * fuzz/seeds/tfjs/ uses), so manifests land on real bytes: a.bin (64
 * bytes), b.bin (37), c.bin (empty), s.bin (three u32-length strings),
 * group1-shard1of2.bin (100) and group1-shard2of2.bin (50). Every weight
 * is then read as graft.open + a full read would (gathers across shards,
 * float16 casts, uint8/uint16 dequantisation). */
#include "fuzz.h"
#include "formats/tfjs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[4096];

static void put(const char *name, const unsigned char *p, size_t n) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) abort();
}

static void pattern(const char *name, size_t n, unsigned seed) {
  unsigned char b[128];
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(i * 37u + seed);
  put(name, b, n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/graft-fuzz-tfjs-%ld", tmp && *tmp ? tmp : "/tmp", (long)getpid());
  if (mkdir(dir, 0700) != 0) abort();
  pattern("a.bin", 64, 11);
  pattern("b.bin", 37, 5);
  put("c.bin", NULL, 0);
  /* "ab", "", "xyz" as tfjs stores strings: u32 little-endian length, bytes */
  static const unsigned char s[] = {2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0, 3, 0, 0, 0, 'x', 'y', 'z'};
  put("s.bin", s, sizeof s);
  pattern("group1-shard1of2.bin", 100, 60);
  pattern("group1-shard2of2.bin", 50, 200);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[4200];
  snprintf(path, sizeof path, "%s/model.json", dir);
  FILE *f = fopen(path, "wb");
  if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
  gt_err e;
  gt_storage *file = gt_storage_map(path, &e);
  if (!file) return 0;
  gt_model m;
  gt_model_init(&m);
  if (gt_tfjs_read(file, path, &m, &e) == GT_OK) fuzz_consume(&m);
  else gt_model_free(&m);
  gt_storage_release(file);
  return 0;
}
