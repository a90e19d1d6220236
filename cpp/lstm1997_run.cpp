// Runs a TorchScript model saved from Python (torch.jit.script or torch.jit.trace of a model that
// uses lstm1997) on an input tensor read from a file, with no Python involved.
//
//   lstm1997_run MODEL INPUT [OUTPUT]
//
// INPUT is a tensor saved in Python with torch.save(tensor, path). The model's output (its first
// element, if it returns a tuple, as lstm1997.LSTM does) is printed, or written to OUTPUT in a
// form torch.load reads.
#include <torch/script.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::vector<char> read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    throw std::runtime_error("cannot open " + path);
  }
  return std::vector<char>(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream file(path, std::ios::binary);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!file) {
    throw std::runtime_error("cannot write " + path);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::cerr << "usage: " << argv[0] << " MODEL INPUT [OUTPUT]\n"
              << "  MODEL   a TorchScript model (torch.jit.save)\n"
              << "  INPUT   its input tensor (torch.save)\n"
              << "  OUTPUT  where to write the output (torch.load reads it); printed if absent\n";
    return 2;
  }
  try {
    torch::jit::Module model = torch::jit::load(argv[1]);
    model.eval();
    const c10::IValue input = torch::jit::pickle_load(read_file(argv[2]));
    if (!input.isTensor()) {
      throw std::runtime_error(std::string("INPUT: expected a tensor saved with torch.save, got ") +
                               input.tagKind());
    }
    c10::InferenceMode inference;
    const c10::IValue result = model.forward({input});
    const at::Tensor output =
        result.isTuple() ? result.toTupleRef().elements()[0].toTensor() : result.toTensor();
    if (argc == 4) {
      write_file(argv[3], torch::jit::pickle_save(output));
    } else {
      std::cout << output << "\n";
    }
  } catch (const std::exception& error) {
    std::cerr << "lstm1997_run: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
