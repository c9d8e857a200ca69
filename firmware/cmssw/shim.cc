// darktrigger's batch shim for hls4mlEmulator plugins (darktrigger.firmware.emulator).
//
// Python calls darktrigger_score() once per batch of N events (ctypes, no Python per event);
// the loop over events runs here, in C++, and does per event what CMSSW's AXOL1TL condition
// (L1Trigger/L1TGlobal/src/AXOL1TLCondition.cc) does:
//   * fills an array of 57 ap_fixed<18,13> from integers (hwPt/2, hwEta, hwPhi per slot: MET,
//     4 e/gamma, 4 muons, 10 jets; the caller gives them as int32, already divided), assigning
//     each C++ int to the fixed-point type as CMSSW's assignments do;
//   * model->prepare_input(array) (the array decays to a pointer inside std::any, as in CMSSW),
//     model->predict(), model->read_result(&pair) with pair = std::pair<result, loss>;
//   * score = loss.to_float() * 16, as a float, written out as a double (exact).
//
// The pair's type differs between plugin versions, and std::any_cast needs it exactly. It is
// not guessed: the build (darktrigger.firmware.emulator.compile_shim) compiles this file once
// per plugin with -DDARKTRIGGER_PAIR_HEADER naming a small generated header that includes the
// plugin project's own headers (those its emulator .cpp includes) and declares
//     typedef <the type the plugin's read_result casts to> darktrigger_pair_t;
// so the type is the project's own, resolved by the compiler.
//
// The plugin is loaded with dlopen(RTLD_LAZY | RTLD_LOCAL) and its extern "C" create_model /
// destroy_model, as CMSSW's hls4mlEmulator::ModelLoader does. Each darktrigger_score() call
// makes its own model, so one plugin can be scored from several threads at once.
#include <dlfcn.h>

#include <any>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "ap_fixed.h"
#include "hls4ml/emulator.h"
#include DARKTRIGGER_PAIR_HEADER

namespace {

typedef ap_fixed<18, 13> cmssw_input_t;  // CMSSW's inputtype
typedef ap_ufixed<18, 14> cmssw_loss_t;  // CMSSW's losstype
constexpr int kInputs = 57;
typedef darktrigger_pair_t pair_t;

template <class T>
struct is_pair : std::false_type {};
template <class A, class B>
struct is_pair<std::pair<A, B>> : std::true_type {};
static_assert(is_pair<pair_t>::value,
              "darktrigger: the plugin's read_result must fill a std::pair<result, loss>: CMSSW's "
              "AXOL1TLCondition passes a pointer to one");

struct Plugin {
  void* lib;
  hls4mlEmulator::create_model_cls* create;
  hls4mlEmulator::destroy_model_cls* destroy;
};

void set_error(char* err, int len, const std::string& msg) {
  if (err != nullptr && len > 0) std::snprintf(err, static_cast<size_t>(len), "%s", msg.c_str());
}

// the compiler's own spelling of a type, e.g. "std::pair<ap_fixed<18, 14, AP_RND_CONV, AP_SAT>, ...>"
template <class T>
std::string type_name() {
  std::string s = __PRETTY_FUNCTION__;
  std::string::size_type a = s.find("T = ");
  if (a == std::string::npos) return s;
  a += 4;
  std::string::size_type b = s.find_first_of(";]", a);
  return s.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

std::string g_pair_name = type_name<pair_t>();
std::string g_input_name = type_name<cmssw_input_t>();

}  // namespace

extern "C" {

// the type the plugin's read_result fills, as the compiler spells it
const char* darktrigger_pair_type() { return g_pair_name.c_str(); }

// the type the inputs are passed as (CMSSW's ap_fixed<18,13>)
const char* darktrigger_input_type() { return g_input_name.c_str(); }

// 1 when the pair's loss is CMSSW's ap_ufixed<18,14> exactly (what its condition declares)
int darktrigger_loss_is_cmssw() {
  return std::is_same<typename pair_t::second_type, cmssw_loss_t>::value ? 1 : 0;
}

// dlopen the plugin and find its two symbols; a handle, or nullptr with the reason in err
void* darktrigger_open(const char* path, char* err, int len) {
  dlerror();
  void* lib = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = dlerror();
    set_error(err, len, std::string("dlopen failed: ") + (why ? why : "unknown error"));
    return nullptr;
  }
  const char* names[2] = {"create_model", "destroy_model"};
  void* found[2] = {nullptr, nullptr};
  for (int i = 0; i < 2; ++i) {
    dlerror();
    found[i] = dlsym(lib, names[i]);
    const char* why = dlerror();
    if (why != nullptr || found[i] == nullptr) {
      set_error(err, len, std::string("the plugin exports no extern \"C\" ") + names[i] +
                              " symbol (" + (why ? why : "null") + ")");
      dlclose(lib);
      return nullptr;
    }
  }
  Plugin* p = new Plugin{lib, reinterpret_cast<hls4mlEmulator::create_model_cls*>(found[0]),
                         reinterpret_cast<hls4mlEmulator::destroy_model_cls*>(found[1])};
  return p;
}

void darktrigger_close(void* handle) {
  Plugin* p = static_cast<Plugin*>(handle);
  if (p == nullptr) return;
  dlclose(p->lib);
  delete p;
}

// score n events: x is int32 [n, 57] (row-major), out double [n] = loss * 16 per event.
// 0 on success; otherwise 1 with the reason (and the event) in err.
int darktrigger_score(void* handle, const int32_t* x, int64_t n, double* out, char* err, int len) {
  Plugin* p = static_cast<Plugin*>(handle);
  hls4mlEmulator::Model* model = nullptr;
  const char* stage = "create_model()";
  int64_t i = 0;
  try {
    model = p->create();
    if (model == nullptr) {
      set_error(err, len, "create_model() returned a null pointer");
      return 1;
    }
    cmssw_input_t inputs[kInputs];
    pair_t result;
    for (i = 0; i < n; ++i) {
      const int32_t* row = x + i * kInputs;
      for (int j = 0; j < kInputs; ++j) inputs[j] = static_cast<int>(row[j]);
      stage = "prepare_input(ap_fixed<18,13>*)";
      model->prepare_input(inputs);
      stage = "predict()";
      model->predict();
      stage = "read_result(pair*)";
      model->read_result(&result);
      const float score = result.second.to_float() * 16;
      out[i] = static_cast<double>(score);
    }
  } catch (const std::bad_any_cast& e) {
    set_error(err, len, std::string(stage) + " threw std::bad_any_cast at event " + std::to_string(i) +
                            ": the plugin does not take the type given (" +
                            (std::string(stage).rfind("prepare", 0) == 0 ? g_input_name : g_pair_name) +
                            ")");
    if (model != nullptr) p->destroy(model);
    return 1;
  } catch (const std::exception& e) {
    set_error(err, len, std::string(stage) + " threw at event " + std::to_string(i) + ": " + e.what());
    if (model != nullptr) p->destroy(model);
    return 1;
  }
  p->destroy(model);
  return 0;
}

}  // extern "C"
