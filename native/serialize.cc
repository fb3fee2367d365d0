// Writing the torch.save zip format for a flat dict of named tensors (what pytorch_model.bin is).
// Reading is in TypeScript (src/tensor/torch-load.ts): libtorch's unpickler turns the
// OrderedDict of a state_dict into None. Written with a Pickler that does not tag aggregates, because torch.load(weights_only=True)
// rejects the restore_type_tag calls that torch::pickle_save emits.
#include "handles.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include <fstream>

namespace camemberta {

namespace {

// saveTensors(path, names[], handles[]): the caller writes to a temporary path and renames.
Napi::Value SaveTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState& state = stateOf(env);
  if (!info[0].IsString() || !info[1].IsArray() || !info[2].IsArray()) throwType(env, "saveTensors(path, names[], handles[])");
  std::string path = info[0].As<Napi::String>();
  auto names = info[1].As<Napi::Array>();
  auto handles = info[2].As<Napi::Array>();
  if (names.Length() != handles.Length()) throwType(env, "saveTensors: names and tensors differ in length");
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (uint32_t i = 0; i < names.Length(); i++) {
    // Saved tensors never carry autograd history; CPU copies keep the file loadable anywhere.
    dict.insert(names.Get(i).As<Napi::String>().Utf8Value(), tensorAt(env, state, handles.Get(i)).detach().to(at::kCPU));
  }
  std::vector<char> pickled;
  torch::jit::Pickler pickler([&](const char* bytes, size_t size) { pickled.insert(pickled.end(), bytes, bytes + size); },
                              nullptr, nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(dict);
  pickler.stop();

  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) throw Napi::Error::New(env, "cannot open " + path + " for writing");
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) -> size_t {
    file.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    return file ? size : 0;
  });
  torch::jit::writeArchiveAndTensors("data", pickled.data(), pickled.size(), pickler.tensorData(), writer);
  writer.writeEndOfFile();
  file.close();
  if (!file) throw Napi::Error::New(env, "writing " + path + " failed");
  return env.Undefined();
}

}  // namespace

void registerSerialization(Napi::Env env, Napi::Object exports) {
  exportFunction<SaveTensors>(env, exports, "saveTensors");
}

}  // namespace camemberta
