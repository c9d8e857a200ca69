// darktrigger's header for the hls4mlEmulator plugin interface, written from its published
// description (cms-hls4ml/hls4mlEmulatorExtras): CMSSW's L1 emulation (the AXOL1TL condition
// of L1Trigger/L1TGlobal) loads a model as a shared library, calls its extern "C"
// create_model(), and per event hands it the inputs (prepare_input), runs it (predict) and
// reads its outputs (read_result); destroy_model() deletes it. The arguments travel as
// std::any, so a plugin and its caller must agree on the exact C++ types: CMSSW passes a
// pointer to its input array and a pointer to a std::pair<result, loss>.
//
// This header declares only the interface a plugin implements and the two factory types;
// darktrigger's loader is firmware/cmssw/shim.cc (and the standalone driver.cc).
#ifndef DARKTRIGGER_HLS4ML_EMULATOR_H
#define DARKTRIGGER_HLS4ML_EMULATOR_H

#include <any>

namespace hls4mlEmulator {

class Model {
 public:
  virtual void prepare_input(std::any input) = 0;
  virtual void predict() = 0;
  virtual void read_result(std::any result) = 0;
  virtual ~Model() = default;
};

// the types of the two symbols a plugin exports with C linkage
typedef Model* create_model_cls();
typedef void destroy_model_cls(Model*);

}  // namespace hls4mlEmulator

#endif  // DARKTRIGGER_HLS4ML_EMULATOR_H
