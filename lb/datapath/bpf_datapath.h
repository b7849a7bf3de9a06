// BpfDatapath: the Datapath on the real XDP program and its maps, through the
// libbpf skeletons. Loads xdp_balancer, sizes its maps from the config, pins
// them under the pin path and adopts pinned maps of a previous daemon
// (docs/design.md, contract 4), attaches through libxdp, and offers the typed map operations
// of datapath.h. Decap: the backend side's xdp_decap.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "lb/datapath/datapath.h"
#include "lb_shared.h"

struct balancer;
struct decap;

namespace xdplb::datapath {

enum class XdpMode { Native, Generic, Auto };

class GracePeriods;

struct TestRunResult {
  uint32_t action = 0;          // XDP_* the program returned
  std::vector<uint8_t> output;  // the packet after the program
  uint32_t durationNs = 0;      // kernel-measured, per repeat
};

class BpfDatapath : public Datapath {
 public:
  struct Options {
    std::string pinPath = "/sys/fs/bpf/xdplb";  // empty: no pinning (tests)
    uint32_t maxVips = 256;
    uint32_t maxBackends = 4096;
    uint32_t flowTableSize = 1048576;
  };

  [[nodiscard]] static Result<std::unique_ptr<BpfDatapath>> open(const Options& options);
  ~BpfDatapath() override;

  // True when the maps were adopted from a previous daemon's pins.
  bool adopted() const { return adopted_; }

  // Attaches xdp_balancer to each interface (replacing a previous
  // xdp_balancer atomically) and adds it to lb_tx_ports. On failure the
  // interfaces this call attached to are detached again.
  [[nodiscard]] Result<> attach(const std::vector<std::string>& interfaces, XdpMode mode);
  // The real shutdown: detaches xdp_balancer from the interfaces and removes
  // the pinned maps. Returns the interfaces it was detached from.
  [[nodiscard]] static Result<std::vector<std::string>> detachAll(
      const std::string& pinPath, const std::vector<std::string>& interfaces);

  Result<> setConfig(const GlobalConfig& config) override;
  Result<> putVip(const VipKey& key, const VipEntry& entry) override;
  Result<> removeVip(const VipKey& key) override;
  // Writes lb_vips' port-0 entries into the half of lb_vip_index that no
  // packet reads and names it in lb_config (docs/design.md, "VIP index").
  Result<> publishVips() override;
  Result<std::map<VipKey, VipEntry>> listVips() override;
  Result<> putBackend(uint32_t id, const BackendEntry& backend) override;
  Result<> removeBackend(uint32_t id) override;
  Result<std::map<uint32_t, BackendEntry>> listBackends() override;
  // Writes each ring into its VIP's inactive buffer and flips lb_ring_sel;
  // see "Ring swap" in docs/design.md.
  Result<> swapRings(std::span<const RingUpdate> updates) override;
  // Also zeroes the VIP's counters, so a reused id starts from zero.
  Result<> removeRing(uint32_t vipId) override;
  bool swapWouldWait(uint32_t vipId) override;
  Result<std::optional<Ring>> readRing(uint32_t vipId) override;
  // From the live buffer's own read-only mapping, published at each flip:
  // no lb_rings lookup (before 6.8 each waits for an RCU grace period), no
  // copy, and not under ringsMutex_, which swaps hold while they wait.
  Result<std::optional<uint32_t>> ringSlot(uint32_t vipId, uint32_t hash) override;
  Result<std::optional<uint32_t>> flowEntry(const lb_flow_key& key) override;
  Result<std::optional<uint64_t>> readGeneration(uint32_t vipId) override;
  Result<CounterSnapshot> readCounters() override;
  Result<std::unordered_set<uint32_t>> backendIdsInFlows() override;

  // Runs xdp_balancer once (or repeat times) on packet (BPF_PROG_TEST_RUN).
  [[nodiscard]] Result<TestRunResult> testRun(std::span<const uint8_t> packet,
                                              uint32_t ingressIfindex = 0, uint32_t repeat = 1);
  int progFd() const;
  // The fd of a map by its name (lb_vips, lb_flows, ...), for tests and the
  // benchmark wrapper that shares the maps; -1 when unknown.
  int mapFd(const std::string& name) const;
  // The flow table (lb_flows), read and written through its mmap: the whole
  // entries (key family set, check matching) and their number, and emptying
  // it (tests and benchmarks).
  void forEachFlow(const std::function<void(const lb_flow_entry&)>& fn) const;
  size_t flowCount() const;
  void clearFlows();
  // Sets in lb_flows: flow_table_size / LB_FLOW_WAYS, rounded up.
  uint32_t flowSets() const { return flowSets_; }
  // The key of the flow-table set index (lb_config.flow_secret), for tests.
  uint32_t flowSecret() const { return flowSecret_; }
  // lb_config.vip_index as this process last wrote it: LB_VIP_INDEX_OFF or
  // 1 + the half packets read (tests, benchmarks).
  uint32_t vipIndexState() const { return config_.vip_index; }

 private:
  BpfDatapath() = default;
  Result<> writeVipEntries(const IpAddr& addr, uint8_t proto);
  Result<> writeAddressEntries(const IpAddr& addr, uint8_t proto);
  Result<> writeConfig(const lb_config& next);
  Result<> vipIndexOff();

  balancer* skel_ = nullptr;
  Options options_;
  bool adopted_ = false;
  int ncpus_ = 1;
  uint32_t flowSets_ = 0;
  std::atomic<uint32_t> hashSeed_{0};  // as setConfig last wrote it
  uint32_t flowSecret_ = 0;            // lb_config.flow_secret, fixed by open()
  lb_flow_set* flows_ = nullptr;       // lb_flows, mmapped by open() (which fails without it)
  size_t flowsBytes_ = 0;
  std::map<VipKey, VipEntry> vips_;  // mirror of the non-alias lb_vips entries
  lb_config config_{};               // lb_config as this process last wrote (or adopted) it

  // The VIP index (lb_vip_index), mmapped by open(): two halves of
  // config_.vip_index_slots slots. A half is rewritten only once a grace
  // period covers the flip that retired it (retiredAt, 0: none to wait for).
  lb_vip_slot* vipIndex_ = nullptr;
  size_t vipIndexBytes_ = 0;
  uint64_t vipIndexRetiredAt_[2] = {0, 0};

  // One ring buffer (an inner map of lb_rings) that this process created and
  // mmapped. Buffers of a previous daemon are never written: reopening them
  // by id needs CAP_SYS_ADMIN, which the service does not have.
  struct RingBuffer {
    int fd = -1;                 // -1: the slot is empty or holds a map we did not create
    uint32_t* slots = nullptr;   // the mmapped map: header slots, then the ring
    size_t bytes = 0;            // length of the mapping
    uint32_t capacity = 0;       // slots the map holds (2 per element)
    uint64_t retiredAtFlip = 0;  // flip that took it out of service; 0: none to wait for
  };
  struct VipRings {
    RingBuffer buffer[LB_RING_BUFFERS];
    uint32_t live = 0;         // lb_ring_sel[vip] as this process last wrote or read it
    bool foreignLive = false;  // when first seen, the live slot held a ring (generation != 0)
  };
  Result<VipRings*> vipRings(uint32_t vipId);
  void forgetRings(uint32_t vipId);
  static void release(RingBuffer& b);
  Result<std::optional<Ring>> readForeignRing(uint32_t vipId, uint32_t index);

  // The live ring of each VIP whose buffer this process created, as lookups
  // read it: a read-only mapping of its own, replaced after each flip under
  // publishedMutex_ (held only to copy or swap the pointer); the mapping
  // lives while a lookup holds it.
  struct PublishedRing {
    const uint32_t* slots = nullptr;
    size_t bytes = 0;
    uint32_t capacity = 0;
    bool unmapped = false;  // mmap failed; slots == nullptr otherwise means "no ring"
    ~PublishedRing();
  };
  void publish(uint32_t vipId, const RingBuffer& live);
  void unpublish(uint32_t vipId);
  std::mutex publishedMutex_;
  std::map<uint32_t, std::shared_ptr<const PublishedRing>> published_;

  // Serialises ring operations: swaps on the main thread, readRing for tests
  // and benchmarks.
  std::mutex ringsMutex_;
  std::map<uint32_t, VipRings> rings_;
  std::unique_ptr<GracePeriods> gracePeriods_;
};

class Decap {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Decap>> open();
  ~Decap();
  [[nodiscard]] Result<> addAddress(const IpAddr& addr);
  // Allows a tunnel source (a balancer's tunnel_source_v4/v6). Once one is
  // added, tunnel packets from any other source are dropped; with none, any
  // source is decapsulated (docs/design.md, "Decapsulator").
  [[nodiscard]] Result<> addSource(const IpAddr& addr);
  // Attaches xdp_decap; it stays attached after this process exits.
  [[nodiscard]] Result<> attach(const std::string& interface, XdpMode mode);
  [[nodiscard]] static Result<> detach(const std::string& interface);
  [[nodiscard]] Result<TestRunResult> testRun(std::span<const uint8_t> packet);
  // Per-reason packet/byte counters, by enum lb_decap_reason.
  [[nodiscard]] Result<std::vector<Counter>> readCounters();

 private:
  Decap() = default;
  decap* skel_ = nullptr;
};

}  // namespace xdplb::datapath
