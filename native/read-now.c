// A read that never waits for the disk: preadv2(RWF_NOWAIT) copies what the
// page cache holds and returns EAGAIN for the rest, in about 1.3 us for 4 KiB
// on the main thread. Node's fs.read goes through libuv's thread pool (a
// queue, a wake-up and a callback: 4-16 us of the main thread per read), which
// is most of the cost of a small read of a disk-cache file the kernel already
// holds. A read that would wait is left to fs.read.
#define _GNU_SOURCE
#include <errno.h>
#include <sys/uio.h>
#include "native.h"

#define MAX_PARTS 8

// readNow(fd, position, buffers) -> bytes read (0 at end of file), or -errno
// (-EAGAIN: nothing is cached at position; -EOPNOTSUPP: not on this file system).
napi_value ReadNow(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) { napi_throw_type_error(env, NULL, "readNow(fd, position, buffers)"); return NULL; }
  int32_t fd;
  double position;
  uint32_t parts;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_double(env, argv[1], &position));
  CHECK(napi_get_array_length(env, argv[2], &parts));
  if (parts == 0 || parts > MAX_PARTS) { napi_throw_range_error(env, NULL, "readNow takes 1 to 8 buffers"); return NULL; }
  struct iovec iov[MAX_PARTS];
  for (uint32_t i = 0; i < parts; i++) {
    napi_value b;
    CHECK(napi_get_element(env, argv[2], i, &b));
    CHECK(napi_get_buffer_info(env, b, &iov[i].iov_base, &iov[i].iov_len));
  }
  ssize_t n;
  do n = preadv2(fd, iov, (int)parts, (off_t)position, RWF_NOWAIT);
  while (n < 0 && errno == EINTR);
  napi_value out;
  CHECK(napi_create_double(env, n < 0 ? -(double)errno : (double)n, &out));
  return out;
}
