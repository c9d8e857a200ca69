// A standalone driver that runs an hls4mlEmulator plugin the way CMSSW's AXOL1TL condition
// does, event by event, with nothing of darktrigger's Python or its batch shim in between.
//
//   g++ -O2 -std=c++17 -I<ap_types> -I<darktrigger/firmware/cmssw/include> \
//       '-DDRIVER_RESULT_T=<the plugin's result type>' driver.cc -ldl -o driver
//   ./driver PLUGIN.so COUNTS.i32 SCORES.f64
//
// COUNTS.i32: int32 [N, 19, 3], little-endian, row-major: per event the slots MET, 4 e/gamma,
// 4 muons, 10 jets (each pT-ordered, an empty slot all zeros), each (hwPt, hwEta, hwPhi) as the
// uGT sees them (muons: hwEtaAtVtx, hwPhiAtVtx). A slot with hwPt > 0 is a candidate.
// SCORES.f64: float64 [N], loss * 16 per event (CMSSW's score, a float, widened exactly).
//
// Per event, as the condition does: four zeroed arrays (EtSum 3, e/gamma 12, muon 12, jet 30
// ap_fixed<18,13>); the MET's hwPt/2 (C++ integer division) and hwPhi (its eta left 0); the
// first 4 e/gamma, 4 muons and 10 jets as (hwPt/2, hwEta, hwPhi); concatenated in that order
// into the 57 inputs; prepare_input(inputs), predict(), read_result(&pair) with
// pair = std::pair<DRIVER_RESULT_T, ap_ufixed<18,14>>; score = loss.to_float() * 16.
#include <dlfcn.h>

#include <algorithm>
#include <any>
#include <array>
#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

#include "ap_fixed.h"
#include "hls4ml/emulator.h"

#ifndef DRIVER_RESULT_T
#define DRIVER_RESULT_T ap_fixed<18, 14, AP_RND_CONV, AP_SAT>
#endif

typedef ap_fixed<18, 13> inputtype;
typedef ap_ufixed<18, 14> losstype;
typedef DRIVER_RESULT_T resulttype;
typedef std::pair<resulttype, losstype> pairtype;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s PLUGIN.so COUNTS.i32 SCORES.f64\n", argv[0]);
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_LAZY | RTLD_LOCAL);
  if (lib == nullptr) {
    std::fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
    return 1;
  }
  auto create = reinterpret_cast<hls4mlEmulator::create_model_cls*>(dlsym(lib, "create_model"));
  auto destroy = reinterpret_cast<hls4mlEmulator::destroy_model_cls*>(dlsym(lib, "destroy_model"));
  if (create == nullptr || destroy == nullptr) {
    std::fprintf(stderr, "%s: no create_model/destroy_model symbol\n", argv[1]);
    return 1;
  }
  std::FILE* in = std::fopen(argv[2], "rb");
  if (in == nullptr) {
    std::fprintf(stderr, "cannot read %s\n", argv[2]);
    return 1;
  }
  std::vector<int32_t> counts;
  int32_t buf[4096];
  size_t got;
  while ((got = std::fread(buf, sizeof(int32_t), 4096, in)) > 0) counts.insert(counts.end(), buf, buf + got);
  std::fclose(in);
  const int kSlots = 19, kWords = 3;
  if (counts.size() % (kSlots * kWords) != 0) {
    std::fprintf(stderr, "%s: not int32 [N, 19, 3]\n", argv[2]);
    return 1;
  }
  const size_t n = counts.size() / (kSlots * kWords);
  std::vector<double> scores(n);

  const int NEgammas = 4, NMuons = 4, NJets = 10;
  const int EtSumVecSize = 3, EGVecSize = 12, MuVecSize = 12, JVecSize = 30, NInputs = 57;
  hls4mlEmulator::Model* model = create();
  for (size_t e = 0; e < n; ++e) {
    const int32_t* ev = counts.data() + e * kSlots * kWords;
    auto hw = [&](int slot, int word) { return static_cast<int>(ev[slot * kWords + word]); };
    inputtype fillzero = 0.0;
    inputtype EtSumInput[EtSumVecSize], EgammaInput[EGVecSize], MuInput[MuVecSize], JetInput[JVecSize];
    inputtype ADModelInput[NInputs] = {};
    std::fill(EtSumInput, EtSumInput + EtSumVecSize, fillzero);
    std::fill(EgammaInput, EgammaInput + EGVecSize, fillzero);
    std::fill(MuInput, MuInput + MuVecSize, fillzero);
    std::fill(JetInput, JetInput + JVecSize, fillzero);
    // the candidates: slot 0 the MET, 1-4 e/gamma, 5-8 muons, 9-18 jets; hwPt > 0 present
    if (hw(0, 0) > 0) {
      EtSumInput[0] = hw(0, 0) / 2;
      EtSumInput[2] = hw(0, 2);
    }
    // each kind's present candidates in slot order, (hwPt/2, hwEta, hwPhi) each, zero-filled after
    auto fill = [&](int first_slot, int n, auto* out) {
      for (int i = 0, k = 0; i < n; ++i) {
        if (hw(first_slot + i, 0) <= 0) continue;
        out[3 * k] = hw(first_slot + i, 0) / 2;
        out[3 * k + 1] = hw(first_slot + i, 1);
        out[3 * k + 2] = hw(first_slot + i, 2);
        ++k;
      }
    };
    fill(1, NEgammas, EgammaInput);
    fill(5, NMuons, MuInput);
    fill(9, NJets, JetInput);
    int index = 0;
    for (int i = 0; i < EtSumVecSize; ++i) ADModelInput[index++] = EtSumInput[i];
    for (int i = 0; i < EGVecSize; ++i) ADModelInput[index++] = EgammaInput[i];
    for (int i = 0; i < MuVecSize; ++i) ADModelInput[index++] = MuInput[i];
    for (int i = 0; i < JVecSize; ++i) ADModelInput[index++] = JetInput[i];

    pairtype ADModelResult;
    model->prepare_input(ADModelInput);
    model->predict();
    model->read_result(&ADModelResult);
    const float score = ADModelResult.second.to_float() * 16;
    scores[e] = score;
  }
  destroy(model);
  std::FILE* out = std::fopen(argv[3], "wb");
  if (out == nullptr || std::fwrite(scores.data(), sizeof(double), n, out) != n) {
    std::fprintf(stderr, "cannot write %s\n", argv[3]);
    return 1;
  }
  std::fclose(out);
  dlclose(lib);
  return 0;
}
