{
  "targets": [
    {
      "target_name": "lifeboat_native",
      "sources": ["native/extents.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
