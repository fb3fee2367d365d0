// The torch.save zip format for a flat dict of named tensors (what pytorch_model.bin is).
// Written with a Pickler that does not tag aggregates, because torch.load(weights_only=True)
// rejects the restore_type_tag calls that torch::pickle_save emits.
#include "handles.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/import_read.h>
#include <torch/csrc/jit/serialization/pickler.h>

#include <fstream>

namespace camemberta {

namespace {

// saveTensors(path, names[], handles[]): the caller writes to a temporary path and renames.
Napi::Value SaveTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  std::string path = info[0].As<Napi::String>();
  auto names = info[1].As<Napi::Array>();
  auto handles = info[2].As<Napi::Array>();
  if (names.Length() != handles.Length()) throwType(env, "saveTensors: names and tensors differ in length");
  c10::impl::GenericDict dict(c10::StringType::get(), c10::TensorType::get());
  for (uint32_t i = 0; i < names.Length(); i++) {
    // Saved tensors never carry autograd history; CPU copies keep the file loadable anywhere.
    dict.insert(names.Get(i).As<Napi::String>().Utf8Value(), tensorAt(env, handles.Get(i)).detach().to(at::kCPU));
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
  CAMEMBERTA_CATCH(env)
}

// loadTensors(path) -> [names[], handles[]] for a torch.save'd dict of tensors (nested dicts are
// flattened with '.'); anything else in the file is an error naming the key.
void flatten(Napi::Env env, const c10::IValue& value, const std::string& prefix, std::vector<std::string>& names,
             std::vector<at::Tensor>& tensors, const std::string& path) {
  if (value.isTensor()) {
    names.push_back(prefix);
    tensors.push_back(value.toTensor());
    return;
  }
  if (value.isGenericDict()) {
    for (const auto& entry : value.toGenericDict()) {
      std::string key = entry.key().isString() ? entry.key().toStringRef() : entry.key().tagKind();
      if (entry.key().isInt()) key = std::to_string(entry.key().toInt());
      flatten(env, entry.value(), prefix.empty() ? key : prefix + "." + key, names, tensors, path);
    }
    return;
  }
  throw Napi::Error::New(env, path + ": entry '" + prefix + "' is a " + value.tagKind() + ", not a tensor");
}

Napi::Value LoadTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CAMEMBERTA_TRY
  std::string path = info[0].As<Napi::String>();
  c10::IValue value;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    value = torch::jit::readArchiveAndTensors("data", "", "", std::nullopt, std::nullopt, std::nullopt, reader);
  } catch (const c10::Error& error) {
    throw Napi::Error::New(env, path + ": not a readable torch.save file (" + error.what_without_backtrace() + ")");
  }
  std::vector<std::string> names;
  std::vector<at::Tensor> tensors;
  flatten(env, value, "", names, tensors, path);
  auto nameArray = Napi::Array::New(env, names.size());
  auto handleArray = Napi::Array::New(env, tensors.size());
  for (size_t i = 0; i < names.size(); i++) {
    nameArray.Set(static_cast<uint32_t>(i), Napi::String::New(env, names[i]));
    handleArray.Set(static_cast<uint32_t>(i), tensorHandleValue(env, tensors[i]));
  }
  auto out = Napi::Array::New(env, 2);
  out.Set(0u, nameArray);
  out.Set(1u, handleArray);
  return out;
  CAMEMBERTA_CATCH(env)
}

}  // namespace

void registerSerialization(Napi::Env env, Napi::Object exports) {
  exports.Set("saveTensors", Napi::Function::New(env, SaveTensors, "saveTensors"));
  exports.Set("loadTensors", Napi::Function::New(env, LoadTensors, "loadTensors"));
}

}  // namespace camemberta
