// The functions of lifeboat_native.node, one file each; module.c registers them.
#ifndef LIFEBOAT_NATIVE_H
#define LIFEBOAT_NATIVE_H
#include <node_api.h>

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, NULL, #call " failed"); return NULL; } } while (0)

napi_value DataExtents(napi_env env, napi_callback_info info);
napi_value ReadNow(napi_env env, napi_callback_info info);

#endif
