// Data extents of a sparse file via lseek(SEEK_DATA/SEEK_HOLE), which Node's
// fs does not expose. Lets a backup of a 2 TiB sparse image skip its holes
// instead of reading terabytes of zeros.
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "native.h"

// dataExtents(fd, start, end, maxExtents) -> [start0, end0, start1, end1, ...]
// Returns null when the filesystem does not support SEEK_DATA (caller reads everything).
napi_value DataExtents(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) { napi_throw_type_error(env, NULL, "dataExtents(fd, start, end, maxExtents)"); return NULL; }
  int32_t fd; double startD, endD; uint32_t max;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_double(env, argv[1], &startD));
  CHECK(napi_get_value_double(env, argv[2], &endD));
  CHECK(napi_get_value_uint32(env, argv[3], &max));
  off_t pos = (off_t)startD, end = (off_t)endD;
  napi_value out;
  CHECK(napi_create_array(env, &out));
  uint32_t n = 0;
  while (pos < end && n / 2 < max) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no data after pos
      if (errno == EINVAL || errno == ENOTSUP) { napi_value nul; napi_get_null(env, &nul); return nul; }
      napi_throw_error(env, NULL, strerror(errno));
      return NULL;
    }
    if (data >= end) break;
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) { napi_throw_error(env, NULL, strerror(errno)); return NULL; }
    if (hole > end) hole = end;
    napi_value a, b;
    CHECK(napi_create_double(env, (double)data, &a));
    CHECK(napi_create_double(env, (double)hole, &b));
    CHECK(napi_set_element(env, out, n++, a));
    CHECK(napi_set_element(env, out, n++, b));
    pos = hole;
  }
  return out;
}
