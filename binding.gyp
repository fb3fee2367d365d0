{
  "targets": [
    {
      "target_name": "camemberta",
      "sources": ["<!@(node scripts/find-libtorch.js --field sources)"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!(node scripts/find-libtorch.js --field include)",
        "<!(node scripts/find-libtorch.js --field include)/torch/csrc/api/include"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "<!@(node scripts/find-libtorch.js --field gypDefines)"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-frtti", "-O2"],
      "libraries": [
        "-L<!(node scripts/find-libtorch.js --field lib)",
        "-Wl,-rpath,<!(node scripts/find-libtorch.js --field lib)",
        "<!@(node scripts/find-libtorch.js --field gypLibraries)"
      ]
    }
  ]
}
