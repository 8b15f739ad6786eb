// A read that never waits for the disk: preadv2(RWF_NOWAIT) copies what the
// page cache holds and returns EAGAIN for the rest, in about 1.3 us for 4 KiB
// on the main thread. Node's fs.read goes through libuv's thread pool (a
// queue, a wake-up and a callback: 4-16 us of the main thread per read), which
// is most of the cost of a small read of a disk-cache file the kernel already
// holds. A read that would wait is left to fs.read. Never for a descriptor
// opened with O_DIRECT: there the flag does not stop a read from waiting.
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <sys/uio.h>
#include "native.h"

#define MAX_PARTS 8
// Positions JavaScript numbers hold exactly (2^53 - 1).
#define MAX_POSITION 9007199254740991.0

// readNow(fd, position, buffers) -> bytes read (0 at end of file), or -errno
// (-EAGAIN: nothing is cached at position; -EOPNOTSUPP: not on this file system
// or kernel). Buffers are Uint8Arrays (Buffers among them), 1 to 8 of them.
napi_value ReadNow(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) { napi_throw_type_error(env, NULL, "readNow(fd, position, buffers)"); return NULL; }
  int32_t fd;
  double position;
  uint32_t parts;
  bool isArray;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_double(env, argv[1], &position));
  if (!(position >= 0 && position <= MAX_POSITION) || (double)(int64_t)position != position) {
    napi_throw_range_error(env, NULL, "readNow: the position must be a whole number of bytes from 0 to 2^53-1");
    return NULL;
  }
  CHECK(napi_is_array(env, argv[2], &isArray));
  if (!isArray) { napi_throw_type_error(env, NULL, "readNow: buffers must be an array of Uint8Arrays"); return NULL; }
  CHECK(napi_get_array_length(env, argv[2], &parts));
  if (parts == 0 || parts > MAX_PARTS) { napi_throw_range_error(env, NULL, "readNow takes 1 to 8 buffers"); return NULL; }
  struct iovec iov[MAX_PARTS];
  for (uint32_t i = 0; i < parts; i++) {
    napi_value b;
    bool typed;
    napi_typedarray_type type;
    CHECK(napi_get_element(env, argv[2], i, &b));
    CHECK(napi_is_typedarray(env, b, &typed));
    if (typed) CHECK(napi_get_typedarray_info(env, b, &type, &iov[i].iov_len, &iov[i].iov_base, NULL, NULL));
    if (!typed || type != napi_uint8_array) { napi_throw_type_error(env, NULL, "readNow: buffers must be an array of Uint8Arrays"); return NULL; }
  }
  ssize_t n;
#ifdef RWF_NOWAIT
  do n = preadv2(fd, iov, (int)parts, (off_t)position, RWF_NOWAIT);
  while (n < 0 && errno == EINTR);
#else
  n = -1;
  errno = EOPNOTSUPP;
#endif
  napi_value out;
  CHECK(napi_create_double(env, n < 0 ? -(double)errno : (double)n, &out));
  return out;
}
