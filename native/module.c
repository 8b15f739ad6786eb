// lifeboat_native.node: what Node's fs does not expose. Optional: without it
// (no compiler when npm install ran), callers take a slower path, never a wrong one.
#include "native.h"

static napi_value Init(napi_env env, napi_value exports) {
  static const struct { const char *name; napi_callback fn; } fns[] = {
    { "dataExtents", DataExtents },
    { "readNow", ReadNow },
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    CHECK(napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &fn));
    CHECK(napi_set_named_property(env, exports, fns[i].name, fn));
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
