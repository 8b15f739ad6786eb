{
  "targets": [
    {
      "target_name": "lifeboat_native",
      "sources": ["native/module.c", "native/data-extents.c", "native/read-now.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
