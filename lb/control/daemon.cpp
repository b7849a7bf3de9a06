#include "lb/control/daemon.h"

#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "lb/common/caps.h"
#include "lb/common/sd_notify.h"
#include "lb/config/config.h"
#include "lb/control/announce.h"
#include "lb/control/config_watch.h"
#include "lb/control/lifecycle.h"
#include "lb/control/lookup.h"
#include "lb/control/neighbours.h"
#include "lb/control/reconciler.h"
#include "lb/control/reload.h"
#include "lb/control/status_json.h"
#include "lb/control/telemetry.h"
#include "lb/datapath/bpf_datapath.h"
#include "lb/datapath/probe_encap.h"
#include "lb/health/checker.h"
#include "lb/health/probe_slots.h"
#include "lb/metrics/exposition.h"
#include "lb/metrics/http_server.h"

namespace xdplb::control {
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

// Start-up refuses early, naming the capability, rather than failing deep in
// libbpf with EPERM. What each one's absence looks like without this check
// (measured with setpriv on 6.x): no CAP_BPF, libbpf cannot load even a
// trivial program; no CAP_PERFMON, the verifier rejects xdp_balancer's packet
// pointer arithmetic (EACCES); no CAP_NET_ADMIN, creating the lb_tx_ports
// devmap fails (EPERM) before attaching could. CAP_SYS_ADMIN implies the first
// two.
std::string missingCapabilities() {
  std::string missing;
  auto add = [&](const char* what) {
    missing += (missing.empty() ? " " : ", ") + std::string(what);
  };
  if (!haveCapability(CAP_BPF) && !haveCapability(CAP_SYS_ADMIN))
    add("CAP_BPF (load programs, create maps)");
  if (!haveCapability(CAP_NET_ADMIN)) add("CAP_NET_ADMIN (the lb_tx_ports devmap, attaching XDP)");
  if (!haveCapability(CAP_PERFMON) && !haveCapability(CAP_SYS_ADMIN))
    add("CAP_PERFMON (the verifier allows packet pointer arithmetic only with it)");
  return missing;
}

health::CheckType checkType(config::CheckType t) {
  switch (t) {
    case config::CheckType::Tcp:
      return health::CheckType::Tcp;
    case config::CheckType::Http:
      return health::CheckType::Http;
    case config::CheckType::Https:
      return health::CheckType::Https;
    case config::CheckType::Dns:
      return health::CheckType::Dns;
    case config::CheckType::None:
      break;
  }
  return health::CheckType::None;
}

datapath::XdpMode xdpMode(config::XdpMode m) {
  switch (m) {
    case config::XdpMode::Native:
      return datapath::XdpMode::Native;
    case config::XdpMode::Generic:
      return datapath::XdpMode::Generic;
    case config::XdpMode::Auto:
      break;
  }
  return datapath::XdpMode::Auto;
}

bool sameSpec(const health::CheckSpec& a, const health::CheckSpec& b) {
  return a.type == b.type && a.address == b.address && a.port == b.port && a.path == b.path &&
         a.host == b.host && a.expect == b.expect && a.interval == b.interval &&
         a.timeout == b.timeout && a.rise == b.rise && a.fall == b.fall && a.source == b.source &&
         a.mark == b.mark && a.localError == b.localError;
}

// /healthz calls the loop stalled when it has not ticked for kLivenessLimit;
// the watchdog (WatchdogSec=) is the hard limit, this one is for monitoring.
constexpr auto kTickInterval = 1s;
constexpr auto kLivenessLimit = 10s;

// Every backend's next-hop neighbour is nudged this often (docs/design.md
// "Neighbours and egress"): well inside the kernel's gc_stale_time (60 s), so
// an entry the XDP traffic never confirms is re-probed from STALE and never
// collected, and a FAILED one is asked again within 5 s.
constexpr auto kNeighbourInterval = 5s;

double unixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// tc_probe_encap's per-CPU counters, read at scrape time (docs/design.md
// "Metrics"): xdplb_probe_packets_total{reason}.
class ProbeCounters : public prometheus::Collectable {
 public:
  explicit ProbeCounters(datapath::ProbeEncap& pe) : pe_(pe) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    auto c = pe_.readCounters();
    if (!c) return out;
    static const char* const names[] = LB_PROBE_REASON_NAMES;
    auto& f = out.emplace_back(
        metrics::family("xdplb_probe_packets_total",
                        "Packets seen by tc_probe_encap (tunnel-mode health probes), by reason",
                        prometheus::MetricType::Counter, c->size()));
    for (size_t i = 0; i < c->size(); ++i)
      metrics::add(f, {{"reason", names[i]}}, static_cast<double>((*c)[i].packets));
    return out;
  }

 private:
  datapath::ProbeEncap& pe_;
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions options) : options_(std::move(options)) {}
  ~Daemon() {
    if (gcThread_.joinable()) gcThread_.join();
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  int run() {
    // Before anything else: from here SIGHUP, SIGTERM and SIGINT wait in the
    // signal set until the loop runs, instead of killing the daemon with
    // their default action during start-up.
    for (int sig : {SIGHUP, SIGTERM, SIGINT}) signals_.add(sig);
    // And blocked until the loop runs: a caught signal still interrupts a
    // system call, and the verifier gives up loading xdp_balancer with
    // EAGAIN when one is pending (a SIGHUP during start-up failed it). The
    // threads started meanwhile (HTTP, garbage collection) keep them
    // blocked, so the handler runs on this thread only.
    sigset_t startupSignals;
    sigemptyset(&startupSignals);
    for (int sig : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&startupSignals, sig);
    sigset_t runMask;
    pthread_sigmask(SIG_BLOCK, &startupSignals, &runMask);
    auto loaded = config::loadFile(options_.configPath);
    if (!loaded) {
      for (const auto& e : loaded.error()) spdlog::error("{}", e.toString());
      spdlog::error("{}: {} error(s); not starting", options_.configPath, loaded.error().size());
      return 1;
    }
    cfg_ = std::move(*loaded);
    for (const auto& w : cfg_.warnings) spdlog::warn("{}", w.toString());
    if (auto missing = missingCapabilities(); !missing.empty()) {
      spdlog::error("xdplb run lacks{}; run it as root or from the systemd unit", missing);
      return 1;
    }

    auto dp = datapath::BpfDatapath::open({.pinPath = cfg_.daemon.pinPath,
                                           .maxVips = cfg_.daemon.maxVips,
                                           .maxBackends = cfg_.daemon.maxBackends,
                                           .flowTableSize = cfg_.daemon.flowTableSize});
    if (!dp) {
      spdlog::error("datapath: {}", dp.error().message());
      return 1;
    }
    dp_ = std::move(*dp);
    reconciler_ = std::make_unique<Reconciler>(
        *dp_, Reconciler::Options{cfg_.daemon.maxVips, cfg_.daemon.maxBackends});
    if (auto r = reconciler_->adopt(); !r) {
      spdlog::error("adopting pinned state: {}", r.error().message());
      return 1;
    }
    telemetry_ = std::make_unique<Telemetry>(exposition_, dp_.get(), [this] { return snapshot(); });
    reconciler_->onRingSwap([this](const RingEvent& ev) { telemetry_->ringSwapped(ev); });

    // Rings first, then attach: the program never sees a VIP without its ring.
    if (auto r = reconciler_->apply(cfg_); !r) {
      spdlog::error("applying {}: {}", cfg_.path, r.error().message());
      return 1;
    }
    publish();
    if (auto r = dp_->attach(cfg_.daemon.interfaces, xdpMode(cfg_.daemon.xdpMode)); !r) {
      spdlog::error("attach: {}", r.error().message());
      return 1;
    }
    attached_ = true;
    startNeighbours();
    if (auto r = startAnnounce(); !r) {
      spdlog::error("announce: {}", r.error().message());
      return 1;
    }
    publish();
    telemetry_->configReload(true);
    {
      std::lock_guard lock(reloadMutex_);
      reloadStatus_ = {0, "success", {}, options_.configPath, unixNow()};
    }
    tick();

    startProbeEncap();
    checker_ = std::make_unique<health::HealthChecker>(
        io_, [this](const health::Event& ev) { onHealthEvent(ev); });
    syncChecks();

    if (auto r = startHttp(); !r) {
      spdlog::error("metrics: {}", r.error().message());
      return 1;
    }

    dropCapabilities();
    startSignals();
    syncWatch();
    startGarbageCollection();
    // READY=1 only now: the program is attached, the rings are live, checks
    // and HTTP run. A failure above returns 1 without it, so systemd sees a
    // failed start rather than a ready service.
    notifier_ = Notifier::fromEnvironment();
    // The pinger is a timer on this io_context, the one that runs the
    // reconciler, reloads and health checks: a handler that blocks (a wedged
    // datapath call, a reload stuck reading the file) stops the pings, and
    // systemd's watchdog restarts the daemon (the datapath keeps forwarding).
    if (notifier_.watchdogInterval()) pinger_ = std::make_unique<WatchdogPinger>(io_, notifier_);
    notifier_.ready(statusLine());
    notifierReady_ = true;
    spdlog::info("xdplb {} running: {}", XDPLB_VERSION, statusLine());

    // Signals that came during start-up are handled now, by the loop.
    pthread_sigmask(SIG_SETMASK, &runMask, nullptr);
    if (runEventLoop(io_) != 0) {
      if (http_) http_->stop();
      return 1;
    }

    // Shutdown order (docs/design.md, "HTTP endpoints"): the admin API first
    // (no control request is half-served while the loop is gone), the
    // metrics listener last, then the daemon's state goes.
    if (adminTcp_) adminTcp_->stop();
    if (adminSocket_) adminSocket_->stop();
    if (http_) http_->stop();
    spdlog::info(
        "stopped; xdp_balancer stays attached and its maps pinned under {} (fail static); "
        "`xdplb detach --config {}` removes them",
        cfg_.daemon.pinPath, cfg_.path);
    return 0;
  }

 private:
  std::shared_ptr<const StatusSnapshot> snapshot() const {
    std::lock_guard lock(snapshotMutex_);
    return snapshot_;
  }

  void publish() {
    StatusSnapshot st = reconciler_->status();
    addEgress(st);
    announce(st);
    auto s = std::make_shared<const StatusSnapshot>(std::move(st));
    std::lock_guard lock(snapshotMutex_);
    snapshot_ = std::move(s);
  }

  std::string statusLine() const {
    auto s = snapshot();
    size_t up = 0, total = 0, unattached = 0;
    uint64_t generation = 0;
    for (const auto& v : s->vips) {
      generation += v.generation;
      for (const auto& b : v.backends) {
        if (!b.inConfig) continue;
        ++total;
        up += b.inRing;
        unattached += b.egressKnown && !b.egressAttached;
      }
    }
    // docs/design.md "Neighbours and egress": said where `systemctl status`
    // shows it too.
    const std::string egress =
        unattached
            ? fmt::format("; {} backend(s) routed through interfaces xdplb is not attached to",
                          unattached)
            : "";
    return fmt::format("{} VIPs, {}/{} backends in rings, ring generations {}{}{}{}",
                       s->vips.size(), up, total, generation, egress, announceNote(*s),
                       reloadNote_);
  }

  // ---- health ----
  // Tunnel-mode probes need tc_probe_encap on the balancer's interfaces
  // (docs/design.md "Health checks through the tunnel"). Without it they are
  // not sent at all (local trouble, logged per probe batch), never sent
  // unwrapped: the VIP's route would reach whichever backend it reaches.
  void startProbeEncap() {
    auto pe = datapath::ProbeEncap::open();
    if (!pe) {
      spdlog::error("health: tunnel-mode checks cannot run: {}", pe.error().message());
      probeEncapError_ = pe.error().message();
      return;
    }
    if (auto r = (*pe)->attach(cfg_.daemon.interfaces); !r) {
      spdlog::error("health: tunnel-mode checks cannot run: {}", r.error().message());
      probeEncapError_ = r.error().message();
      return;
    }
    probeEncap_ = std::move(*pe);
    probeCounters_ = std::make_shared<ProbeCounters>(*probeEncap_);
    exposition_.add(probeCounters_);
  }

  // Gives every backend probed through the tunnel its slot and socket mark.
  void syncProbeTargets() {
    std::set<IpAddr> wanted;
    for (const auto& v : cfg_.vips)
      if (v.health.type != config::CheckType::None && v.health.mode == config::CheckMode::Tunnel)
        for (const auto& b : v.backends) wanted.insert(b.address);
    const auto change = probeSlots_.assign(wanted);
    if (!probeEncap_) return;
    for (uint32_t slot : change.removed)
      if (auto r = probeEncap_->clearTarget(slot); !r)
        spdlog::error("health: {}", r.error().message());
    for (const auto& [addr, slot] : change.added) {
      const auto& src = addr.isV4() ? cfg_.daemon.tunnelSourceV4 : cfg_.daemon.tunnelSourceV6;
      if (!src) continue;  // the config requires it for every backend's family
      if (auto r = probeEncap_->setTarget(slot, *src, addr); !r)
        spdlog::error("health: {}", r.error().message());
    }
    for (const auto& a : change.full)
      spdlog::error("health: no tunnel-probe slot left for backend {} ({} in use)", a.toString(),
                    LB_PROBE_SLOTS);
  }

  health::CheckSpec specFor(const config::Vip& vip, const config::Backend& b) const {
    health::CheckSpec spec;
    spec.type = checkType(vip.health.type);
    spec.address = b.address;
    spec.port = vip.health.port ? vip.health.port : vip.port;
    spec.path = vip.health.path;
    spec.host = !vip.health.host.empty() ? vip.health.host
                : b.address.isV6()       ? "[" + b.address.toString() + "]"
                                         : b.address.toString();
    spec.expect = vip.health.expect;
    // The server name: sni, else a host that is a name (not an address, no
    // port); none otherwise (README, "Health checks").
    spec.sni = vip.health.sni;
    if (spec.sni.empty() && !vip.health.host.empty() &&
        vip.health.host.find_first_of(":[]") == std::string::npos &&
        !IpAddr::parse(vip.health.host))
      spec.sni = vip.health.host;
    spec.caFile = vip.health.caFile;
    spec.queryName = vip.health.queryName;
    spec.queryType = vip.health.queryType;
    spec.rcodes = vip.health.rcodes;
    spec.dnsOverTcp = vip.health.dnsOverTcp;
    spec.probeSize = vip.health.probeSize;
    spec.interval = vip.health.interval;
    spec.timeout = vip.health.timeout;
    spec.rise = vip.health.rise;
    spec.fall = vip.health.fall;
    spec.source = b.address.isV4() ? cfg_.health.sourceV4 : cfg_.health.sourceV6;
    if (vip.health.mode == config::CheckMode::Tunnel) {
      // To the VIP, as a client connects, wrapped for this one backend.
      spec.address = vip.address;
      if (vip.health.host.empty())
        spec.host =
            vip.address.isV6() ? "[" + vip.address.toString() + "]" : vip.address.toString();
      spec.source = vip.address.isV4() ? cfg_.health.sourceV4 : cfg_.health.sourceV6;
      if (!probeEncap_)
        spec.localError = "tunnel program not loaded: " + probeEncapError_;
      else if (auto slot = probeSlots_.slot(b.address))
        spec.mark = datapath::probeMark(*slot);
      else
        spec.localError = "no tunnel-probe slot left";
    }
    return spec;
  }

  void syncChecks() {
    syncProbeTargets();
    std::map<std::pair<std::string, IpAddr>, health::CheckSpec> wanted;
    for (const auto& v : cfg_.vips) {
      if (v.health.type == config::CheckType::None) continue;
      for (const auto& b : v.backends) wanted[{v.name, b.address}] = specFor(v, b);
    }
    for (auto it = checks_.begin(); it != checks_.end();) {
      auto w = wanted.find(it->first);
      if (w == wanted.end()) {
        checker_->remove(it->second.id);
        byId_.erase(it->second.id);
        it = checks_.erase(it);
        continue;
      }
      if (!sameSpec(it->second.spec, w->second)) {
        checker_->update(it->second.id, w->second);
        it->second.spec = w->second;
      }
      wanted.erase(w);
      ++it;
    }
    for (auto& [key, spec] : wanted) {
      const health::CheckId id = checker_->add(spec);
      checks_[key] = {id, spec};
      byId_[id] = key;
    }
  }

  void onHealthEvent(const health::Event& ev) {
    auto it = byId_.find(ev.id);
    if (it == byId_.end()) return;
    const auto& [vip, addr] = it->second;
    const std::string backend = addr.toString();
    if (ev.result.local)
      telemetry_->localTrouble(vip);
    else
      telemetry_->probe(vip, backend, ev.result.ok, ev.result.reason, ev.result.duration);
    reconciler_->probeAnswered(vip, addr);
    if (reconciler_->hasDeferred()) flushDeferredSoon();
    if (!ev.transition) {
      reconciler_->setLastResult(vip, addr, ev.result.reason);
      publishThrottled();
      return;
    }
    telemetry_->transition(vip, backend, health::toString(ev.transition->to));
    if (auto r = reconciler_->setHealth(vip, addr, ev.transition->to, ev.result.reason); !r)
      spdlog::error("health {} {}: {}", vip, backend, r.error().message());
    if (reconciler_->hasDeferred()) flushDeferredSoon();
    publish();
    notifier_.status(statusLine());
  }

  // A health change whose VIP swapped its ring moments ago waits for that
  // swap's grace period (Reconciler::setHealth) without blocking this loop,
  // which also runs the probes: polled every 2 ms, and every change of the
  // VIP made meanwhile goes live with the same swap.
  void flushDeferredSoon() {
    if (deferArmed_ || stopping_) return;
    deferArmed_ = true;
    deferTimer_.expires_after(2ms);
    deferTimer_.async_wait([this](boost::system::error_code ec) {
      deferArmed_ = false;
      if (ec || stopping_) return;
      if (auto r = reconciler_->flushDeferred(); !r)
        spdlog::error("health: deferred ring swap: {}", r.error().message());
      publish();
      if (reconciler_->hasDeferred()) flushDeferredSoon();
    });
  }

  // Probe results without transitions only refresh "last check" in status:
  // republish at most once a second.
  void publishThrottled() {
    const auto now = std::chrono::steady_clock::now();
    if (now - lastPublish_ < 1s) return;
    lastPublish_ = now;
    publish();
  }

  // ---- reload ----
  void reload(const char* why) {
    spdlog::info("reloading {} ({})", options_.configPath, why);
    notifier_.reloading();
    auto next = reloadConfig(options_.configPath, cfg_, *reconciler_);
    if (!next && next.error().applyError) {
      // The reconciler rolled the datapath back (docs/design.md,
      // "Reconciler"); only a rollback that failed too leaves it mixed.
      const std::string what = next.error().applyError->message();
      if (next.error().rolledBack)
        spdlog::error(
            "reload: applying failed: {}; rolled back, the running configuration stays in force",
            what);
      else
        spdlog::error(
            "reload: applying failed and rolling back failed too: {}; the datapath "
            "holds parts of both configurations, retrying until the running one is "
            "wholly live again",
            what);
      telemetry_->configReload(false);
      publish();
      recordReload(next.error().rolledBack ? "rolled_back" : "not_converged", {what});
      reloadNote_ = (next.error().rolledBack ? "; last reload failed to apply (rolled back): "
                                             : "; last reload failed to apply, NOT converged: ") +
                    what;
      if (!reconciler_->converged()) convergeSoon();
      notifier_.ready(statusLine());
      return;
    }
    if (!next) {
      for (const auto& e : next.error().configErrors) spdlog::error("{}", e.toString());
      spdlog::error("reload refused: {} error(s) in {}; the running configuration stays in force",
                    next.error().configErrors.size(), options_.configPath);
      telemetry_->configReload(false);
      {
        std::vector<std::string> errors;
        for (const auto& e : next.error().configErrors) errors.push_back(e.toString());
        recordReload("refused", std::move(errors));
      }
      reloadNote_ = fmt::format("; last reload refused ({} error(s) in {})",
                                next.error().configErrors.size(), options_.configPath);
      notifier_.ready(statusLine());
      return;
    }
    const config::Announce previous = cfg_.announce;
    cfg_ = std::move(*next);
    for (const auto& w : cfg_.warnings) spdlog::warn("{}", w.toString());
    syncChecks();
    syncWatch();
    reconfigureAnnounce(previous);
    resolveNeighbours(/*reconcile=*/true);
    publish();
    telemetry_->configReload(true);
    recordReload("success", {});
    reloadNote_.clear();
    spdlog::info("reload accepted: {}", statusLine());
    notifier_.ready(statusLine());
  }

  // After a rollback that failed: Reconciler::converge with backoff (100 ms
  // doubling to 10 s) until the running configuration is wholly live again.
  void convergeSoon() {
    if (convergeArmed_ || stopping_) return;
    convergeArmed_ = true;
    convergeTimer_.expires_after(convergeDelay_);
    convergeTimer_.async_wait([this](boost::system::error_code ec) {
      convergeArmed_ = false;
      if (ec || stopping_) return;
      if (auto r = reconciler_->converge(); !r) {
        convergeDelay_ = std::min<std::chrono::milliseconds>(convergeDelay_ * 2, 10s);
        spdlog::warn("converging back to the running configuration: {} (next try in {} ms)",
                     r.error().message(), convergeDelay_.count());
        publish();
        return convergeSoon();
      }
      convergeDelay_ = 100ms;
      reloadNote_ = "; last reload failed to apply (rolled back)";
      publish();
      notifier_.status(statusLine());
    });
  }

  void startSignals() { waitSignal(); }

  void waitSignal() {
    signals_.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        reload("SIGHUP");
        waitSignal();
        return;
      }
      spdlog::info("signal {}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      stop();
    });
  }

  void stop() {
    // First, so systemd knows the exit that follows is asked for.
    notifier_.stopping();
    // Health changes waiting for a grace period go live before the daemon
    // leaves (the datapath outlives it: contract 4). Blocking is fine now.
    if (reconciler_) flushBeforeExit(*reconciler_);
    stopping_ = true;
    signals_.cancel();
    gcTimer_.cancel();
    tickTimer_.cancel();
    deferTimer_.cancel();
    watch_.reset();
    announceTimer_.cancel();
    convergeTimer_.cancel();
    neighbourTimer_.cancel();
    if (checker_) checker_->stop();
    if (pinger_) pinger_.reset();
    io_.stop();
  }

  // The opt-in file watch (daemon.watch; `--no-watch` overrides it), started
  // or stopped to match the running config, so a reload can turn it on or off.
  void syncWatch() {
    const bool want = options_.watchConfig && cfg_.daemon.watch && !stopping_;
    if (!want) {
      if (watch_) spdlog::info("config watch off");
      watch_.reset();
      return;
    }
    if (watch_) return;
    watch_ = std::make_unique<ConfigWatch>(io_, options_.configPath,
                                           [this](const std::string& why) { reload(why.c_str()); });
    if (auto r = watch_->start(); !r) {
      spdlog::warn("config watch: {}; reload with SIGHUP", r.error().message());
      watch_.reset();
      return;
    }
    spdlog::info("watching {} for complete writes and renames (daemon.watch)", options_.configPath);
  }

  // Every 10 s while removed backends drain: their ids are freed once no
  // flow names them. The flow-table scan (~10 ms per million entries,
  // bench_control) runs on a thread of its own, off this loop, which runs
  // the probes; the collection itself comes back here.
  void startGarbageCollection() {
    gcTimer_.expires_after(10s);
    gcTimer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping_) return;
      if (!reconciler_->garbagePending()) return startGarbageCollection();
      if (gcThread_.joinable()) gcThread_.join();  // the previous scan, long done
      // Numbered before it starts: it counts only for backends removed (and
      // their rings' grace periods over) by now (Reconciler::beginScan).
      const uint64_t scan = reconciler_->beginScan();
      gcThread_ = std::thread([this, scan] {
        auto named = dp_->backendIdsInFlows();
        asio::post(io_, [this, scan, named = std::move(named)] {
          if (stopping_) return;
          auto freed = named ? reconciler_->collectGarbage(*named, scan)
                             : Result<size_t>(std::unexpected(named.error()));
          if (!freed)
            spdlog::warn("freeing drained backends: {}", freed.error().message());
          else if (*freed) {
            publish();
            telemetry_->forgetRemoved();  // their series go with them
          }
          startGarbageCollection();
        });
      });
    });
  }

  // Start-up is done: programs loaded and attached, maps created, the admin
  // socket chowned. What later work needs (docs/design.md, "Least
  // privilege"): CAP_BPF for every bpf() call (a VIP's new ring map after a
  // reload, map updates, counters); CAP_NET_ADMIN for route announcements.
  // Everything else goes (CAP_PERFMON, CAP_CHOWN, and for a root daemon the
  // rest of the full set).
  void dropCapabilities() {
    if (auto r = keepOnlyCapabilities({CAP_BPF, CAP_NET_ADMIN}); !r)
      spdlog::warn("dropping capabilities: {}; running with {}", r.error().message(),
                   effectiveCapabilities());
    else
      spdlog::info("capabilities after start: {}", effectiveCapabilities());
  }

  // ---- HTTP ----
  // Two servers, each on a thread of its own (docs/design.md, "Admin API"):
  // the metrics listener serves /metrics and /healthz only; the control API
  // (/api/v1/*) is on the admin UNIX socket, and on a TCP listener only when
  // [admin] listen asks for one. Nothing under /api/v1 answers on the
  // metrics port.
  Result<> startHttp() {
    std::map<std::string, metrics::Handler> scrape;
    scrape["/metrics"] = [this](const metrics::HttpRequest& req) {
      metrics::HttpResponse r;
      r.contentType = "text/plain; version=0.0.4; charset=utf-8";
      if (!req.head) r.body = exposition_.render();
      return r;
    };
    scrape["/healthz"] = [this](const metrics::HttpRequest&) { return healthz(); };
    auto server = metrics::HttpServer::start({.listen = cfg_.metrics.listen}, std::move(scrape));
    if (!server) return std::unexpected(server.error());
    http_ = std::move(*server);
    spdlog::info("metrics on {}: /metrics /healthz", cfg_.metrics.listen);

    auto admin = adminRoutes();
    std::optional<gid_t> gid;
    if (!cfg_.admin.group.empty()) {
      auto g = groupId(cfg_.admin.group);
      if (!g) return std::unexpected(g.error());
      gid = *g;
    }
    if (auto dir = std::filesystem::path(cfg_.admin.socket).parent_path(); !dir.empty()) {
      // Outside systemd (whose RuntimeDirectory= makes /run/xdplb) the
      // directory may be missing.
      std::error_code ec;
      if (std::filesystem::create_directories(dir, ec))
        std::filesystem::permissions(dir, std::filesystem::perms(0755), ec);
    }
    auto sock = metrics::HttpServer::start(
        {.unixPath = cfg_.admin.socket, .unixMode = 0660, .unixGroup = gid}, admin);
    if (!sock) return std::unexpected(sock.error());
    adminSocket_ = std::move(*sock);
    spdlog::info("admin API on {}: {}", cfg_.admin.socket, adminPaths(admin));
    if (!cfg_.admin.listen.empty()) {
      auto tcp = metrics::HttpServer::start({.listen = cfg_.admin.listen}, admin);
      if (!tcp) return std::unexpected(tcp.error());
      adminTcp_ = std::move(*tcp);
      spdlog::warn(
          "admin API also on TCP {} ([admin] listen): anyone who can connect there can "
          "read the status and use lookups",
          cfg_.admin.listen);
    }
    return {};
  }

  static std::string adminPaths(const std::map<std::string, metrics::Handler>& routes) {
    std::string out;
    for (const auto& [path, h] : routes) out += (out.empty() ? "" : " ") + path;
    return out;
  }

  static Result<gid_t> groupId(const std::string& name) {
    std::vector<char> buf(16384);
    group g{};
    group* found = nullptr;
    const int rc = getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found);
    if (rc != 0) return errnoError(rc, "admin.group: look up group '" + name + "'");
    if (!found) return makeError("admin.group: no group named '" + name + "' on this host");
    return found->gr_gid;
  }

  std::map<std::string, metrics::Handler> adminRoutes() {
    std::map<std::string, metrics::Handler> routes;
    routes["/api/v1/status"] = [this](const metrics::HttpRequest& req) {
      metrics::HttpResponse r;
      r.contentType = "application/json";
      if (req.head) return r;
      auto counters = dp_->readCounters();
      r.body =
          statusJson(*snapshot(), counters ? &*counters : nullptr,
                     {XDPLB_VERSION, options_.configPath, reloadStatus().finishedUnix, attached_});
      return r;
    };
    routes["/api/v1/lookup"] = [this](const metrics::HttpRequest& req) {
      if (req.head) return metrics::HttpResponse{200, "application/json", ""};
      return lookupHandler(req);
    };
    routes["/api/v1/maintenance"] = [this](const metrics::HttpRequest& req) {
      return maintenanceHandler(req);
    };
    routes["/api/v1/reload"] = [this](const metrics::HttpRequest& req) {
      metrics::HttpResponse r;
      r.contentType = "application/json";
      if (!req.head) r.body = reloadStatusJson(reloadStatus());
      return r;
    };
    return routes;
  }

  // /healthz: 200 while the datapath is attached and the main loop has
  // ticked within kLivenessLimit; otherwise 503, saying which.
  metrics::HttpResponse healthz() const {
    metrics::HttpResponse r;
    const auto age = std::chrono::steady_clock::now() -
                     std::chrono::steady_clock::time_point(
                         std::chrono::steady_clock::duration(lastTick_.load()));
    const double ageSec = std::chrono::duration<double>(age).count();
    const bool live = lastTick_.load() != 0 && age < kLivenessLimit;
    const bool ok = attached_ && snapshot() != nullptr && live;
    r.status = ok ? 200 : 503;
    r.body =
        fmt::format("{}: datapath {}, main loop last ticked {:.1f} s ago{}\n", ok ? "ok" : "not ok",
                    attached_ ? "attached" : "not attached", ageSec, live ? "" : " (stalled)");
    return r;
  }

  // The main loop's heartbeat for /healthz: a timer on io_, so a handler
  // that blocks the loop stops it.
  void tick() {
    lastTick_ = std::chrono::steady_clock::now().time_since_epoch().count();
    tickTimer_.expires_after(kTickInterval);
    tickTimer_.async_wait([this](boost::system::error_code ec) {
      if (!ec && !stopping_) tick();
    });
  }

  ReloadStatus reloadStatus() const {
    std::lock_guard lock(reloadMutex_);
    return reloadStatus_;
  }

  void recordReload(const char* result, std::vector<std::string> errors) {
    std::lock_guard lock(reloadMutex_);
    ++reloadStatus_.generation;
    reloadStatus_.result = result;
    reloadStatus_.errors = std::move(errors);
    reloadStatus_.config = options_.configPath;
    reloadStatus_.finishedUnix = unixNow();
  }

  metrics::HttpResponse lookupHandler(const metrics::HttpRequest& req) {
    return lookupHttp(*snapshot(), *dp_, req);
  }

  // ---- neighbours and egress (docs/design.md "Neighbours and egress") ----
  // XDP cannot make the kernel resolve a neighbour, so whatever the health
  // check type (none included) the daemon keeps every backend's next hop
  // resolved, and checks that its route leaves through an interface
  // xdp_balancer runs on. Failures are logged, never fatal.
  void startNeighbours() {
    auto k = NetlinkNeighbours::open();
    if (!k) {
      spdlog::error("neighbours: {}; backends' neighbours are not resolved by xdplb",
                    k.error().message());
      return;
    }
    neighbourKernel_ = std::move(*k);
    resolver_ = std::make_unique<NeighbourResolver>(*neighbourKernel_);
    resolveNeighbours(/*reconcile=*/true);
    neighbourTick();
  }

  void neighbourTick() {
    neighbourTimer_.expires_after(kNeighbourInterval);
    neighbourTimer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping_) return;
      resolveNeighbours(/*reconcile=*/false);
      neighbourTick();
    });
  }

  // One pass over every configured backend. At reconcile time (start-up,
  // reload) every problem is logged; on the timer only changes are, so a
  // lasting problem is one warning, not one every 5 s.
  void resolveNeighbours(bool reconcile) {
    if (!resolver_) return;
    std::vector<NeighbourResolver::Key> backends;
    for (const auto& v : cfg_.vips)
      for (const auto& b : v.backends) backends.emplace_back(v.name, b.address);
    std::set<uint32_t> attached;
    for (const auto& name : cfg_.daemon.interfaces)
      if (const unsigned idx = if_nametoindex(name.c_str())) attached.insert(idx);
    auto next = resolver_->pass(backends, attached);
    bool changed = next.size() != egress_.size();
    for (const auto& [key, e] : next) {
      const auto& [vip, addr] = key;
      auto old = egress_.find(key);
      const bool fresh = reconcile || old == egress_.end();
      if (!e.error.empty() && (fresh || old->second.error != e.error))
        spdlog::warn("neighbours: backend {} of VIP {}{}: {}", addr.toString(), vip,
                     e.interface.empty() ? "" : " (interface " + e.interface + ")", e.error);
      if (e.hop && !e.attached &&
          (fresh || old->second.attached || old->second.interface != e.interface))
        spdlog::warn(
            "egress: backend {} of VIP {}: its route leaves through {}, which xdp_balancer is "
            "not attached to (daemon.interfaces); its packets are dropped (no_txport)",
            addr.toString(), vip, e.interface);
      if (e.hop && e.attached && old != egress_.end() && old->second.hop && !old->second.attached)
        spdlog::info("egress: backend {} of VIP {}: its route leaves through {} (attached) again",
                     addr.toString(), vip, e.interface);
      changed |= old == egress_.end() || old->second != e;
    }
    egress_ = std::move(next);
    if (changed && reconciler_) publish();
  }

  void addEgress(StatusSnapshot& st) const {
    for (auto& v : st.vips)
      for (auto& b : v.backends) {
        auto it = egress_.find({v.name, b.address});
        if (it == egress_.end()) continue;
        const BackendEgress& e = it->second;
        b.egressKnown = e.hop.has_value();
        b.egressAttached = e.attached;
        b.egressInterface = e.interface;
        b.nextHop = e.hop ? e.hop->address.toString() : "";
        b.neighbour = e.neighbour;
        b.egressError = e.error;
      }
  }

  // ---- announcements and maintenance (docs/design.md "Announcing VIPs") ----
  // Maintenance is a directory under pin_path: bpffs holds directories but no
  // files, and this way the state lives and dies with the pinned maps
  // (kept across restarts, removed by `xdplb detach`, gone at reboot).
  std::filesystem::path maintenancePath() const {
    return std::filesystem::path(cfg_.daemon.pinPath) / "maintenance";
  }

  Result<> startAnnounce() {
    std::error_code ec;
    maintenance_ = std::filesystem::is_directory(maintenancePath(), ec);
    if (maintenance_)
      spdlog::warn("maintenance is on ({} exists): announcing nothing", maintenancePath().string());
    if (cfg_.announce.table == 0) return {};
    auto sink = NetlinkRouteSink::open(cfg_.announce.table);
    if (!sink) return std::unexpected(sink.error());
    routeSink_ = std::move(*sink);
    // The start-up hold counts from here, the attach, just before health
    // checking starts: a slow program load does not eat into it.
    if (!startTime_) startTime_ = std::chrono::steady_clock::now();
    announcer_ = std::make_unique<Announcer>(*routeSink_, cfg_.announce.delay, *startTime_);
    if (auto r = announcer_->adopt(); !r) return r;
    spdlog::info("announce: table {}, delay {} ms; adopted {} route(s) a previous run left",
                 cfg_.announce.table, cfg_.announce.delay.count(), announcer_->routes().size());
    return {};
  }

  // A reload that changes [announce]: routes move to the new table (or go,
  // with table 0); a new delay starts a fresh decision that keeps the routes
  // still deserved (they are adopted again).
  void reconfigureAnnounce(const config::Announce& previous) {
    if (previous.table == cfg_.announce.table && previous.delay == cfg_.announce.delay) return;
    if (announcer_ && previous.table != cfg_.announce.table)
      if (auto r = announcer_->withdrawAll(); !r)
        spdlog::error("announce: withdrawing from table {}: {}", previous.table,
                      r.error().message());
    announcer_.reset();
    routeSink_.reset();
    announceTimer_.cancel();
    if (auto r = startAnnounce(); !r) spdlog::error("announce: {}", r.error().message());
  }

  // Runs the decision for the state in st and fills st's announce fields.
  void announce(StatusSnapshot& st) {
    st.maintenance = maintenance_;
    st.announceTable = announcer_ ? cfg_.announce.table : 0;
    if (!announcer_) return;
    std::vector<AnnounceVip> vips;
    for (const auto& v : st.vips) {
      AnnounceVip a{v.name, v.key.addr, 0, v.minUp};
      // Up and taking new flows: a draining backend (weight 0) serves no new
      // connection, so it does not count towards min_up.
      for (const auto& b : v.backends)
        a.up += b.inConfig && b.weight > 0 && b.health == health::State::Up;
      vips.push_back(std::move(a));
    }
    auto out = announcer_->update(vips, attached_, maintenance_, Announcer::Clock::now());
    for (const auto& a : out.added)
      spdlog::info("announce: route {}/{} added to table {}", a.toString(), a.isV4() ? 32 : 128,
                   cfg_.announce.table);
    for (const auto& a : out.removed)
      spdlog::info("announce: route {}/{} removed from table {}", a.toString(), a.isV4() ? 32 : 128,
                   cfg_.announce.table);
    for (const auto& e : out.errors) spdlog::error("announce: {}", e.message());
    st.announced = announcer_->routes();
    if (out.next && !stopping_) {
      announceTimer_.expires_at(*out.next);
      announceTimer_.async_wait([this](boost::system::error_code ec) {
        if (ec || stopping_) return;
        publish();
        notifier_.status(statusLine());
      });
    }
    if ((!out.added.empty() || !out.removed.empty()) && notifierReady_)
      asio::post(io_, [this] { notifier_.status(statusLine()); });
  }

  std::string announceNote(const StatusSnapshot& s) const {
    std::string note;
    if (s.announceTable) {
      std::set<IpAddr> addrs;
      for (const auto& v : s.vips) addrs.insert(v.key.addr);
      note = fmt::format("; announcing {}/{} VIP addresses in table {}", s.announced.size(),
                         addrs.size(), s.announceTable);
    }
    if (s.maintenance) note += "; MAINTENANCE (routes withdrawn)";
    return note;
  }

  // GET /api/v1/maintenance[?set=on|off]. Runs on the HTTP thread: the change
  // itself is made on the daemon's io_context, which owns the announcer.
  metrics::HttpResponse maintenanceHandler(const metrics::HttpRequest& req) {
    metrics::HttpResponse r;
    r.contentType = "application/json";
    if (req.head) return r;  // HEAD changes nothing
    std::optional<bool> want;
    if (auto it = req.params.find("set"); it != req.params.end()) {
      if (it->second != "on" && it->second != "off") {
        r.status = 400;
        r.body =
            nlohmann::json{{"error", "set must be on or off, not '" + it->second + "'"}}.dump();
        return r;
      }
      want = it->second == "on";
    }
    auto done = std::make_shared<std::promise<std::string>>();
    auto answer = done->get_future();
    asio::post(io_, [this, want, done] {
      std::string error;
      if (want && *want != maintenance_) {
        std::error_code ec;
        if (*want)
          std::filesystem::create_directory(maintenancePath(), ec);
        else
          std::filesystem::remove(maintenancePath(), ec);
        if (ec) {
          error =
              (*want ? "create " : "remove ") + maintenancePath().string() + ": " + ec.message();
        } else {
          maintenance_ = *want;
          spdlog::warn("maintenance {}: {}", *want ? "on" : "off",
                       *want ? "every route withdrawn; established flows keep forwarding"
                             : "routes return after the announce delay");
          publish();
          notifier_.status(statusLine());
        }
      }
      done->set_value(error);
    });
    if (answer.wait_for(5s) != std::future_status::ready) {
      r.status = 503;
      r.body = nlohmann::json{{"error", "the daemon did not answer within 5 s"}}.dump();
      return r;
    }
    if (auto error = answer.get(); !error.empty()) {
      r.status = 500;
      r.body = nlohmann::json{{"error", error}}.dump();
      return r;
    }
    auto s = snapshot();
    nlohmann::json routes = nlohmann::json::array();
    for (const auto& a : s->announced) routes.push_back(a.toString());
    r.body = nlohmann::json{{"maintenance", s->maintenance},
                            {"announce_table", s->announceTable},
                            {"announced", routes}}
                 .dump() +
             "\n";
    return r;
  }

  DaemonOptions options_;
  config::Config cfg_;
  asio::io_context io_;
  asio::signal_set signals_{io_};
  asio::steady_timer gcTimer_{io_};
  std::thread gcThread_;                // the flow-table scan of a garbage collection
  asio::steady_timer deferTimer_{io_};  // flushDeferredSoon
  bool deferArmed_ = false;
  std::unique_ptr<ConfigWatch> watch_;     // syncWatch
  asio::steady_timer convergeTimer_{io_};  // convergeSoon
  bool convergeArmed_ = false;
  std::chrono::milliseconds convergeDelay_{100};
  std::unique_ptr<datapath::BpfDatapath> dp_;
  std::unique_ptr<Reconciler> reconciler_;
  metrics::Exposition exposition_;
  std::unique_ptr<Telemetry> telemetry_;
  std::unique_ptr<datapath::ProbeEncap> probeEncap_;
  std::shared_ptr<ProbeCounters> probeCounters_;  // reads probeEncap_ at scrape time
  std::string probeEncapError_;
  health::ProbeSlots probeSlots_{LB_PROBE_SLOTS};
  std::unique_ptr<health::HealthChecker> checker_;
  struct Check {
    health::CheckId id;
    health::CheckSpec spec;
  };
  std::map<std::pair<std::string, IpAddr>, Check> checks_;
  std::map<health::CheckId, std::pair<std::string, IpAddr>> byId_;
  std::unique_ptr<metrics::HttpServer> http_;                       // [metrics] listen
  std::unique_ptr<metrics::HttpServer> adminSocket_;                // [admin] socket
  std::unique_ptr<metrics::HttpServer> adminTcp_;                   // [admin] listen, when set
  std::optional<std::chrono::steady_clock::time_point> startTime_;  // of announcing
  std::unique_ptr<NetlinkRouteSink> routeSink_;
  std::unique_ptr<Announcer> announcer_;
  asio::steady_timer announceTimer_{io_};
  std::unique_ptr<NetlinkNeighbours> neighbourKernel_;
  std::unique_ptr<NeighbourResolver> resolver_;
  asio::steady_timer neighbourTimer_{io_};  // neighbourTick
  std::map<NeighbourResolver::Key, BackendEgress> egress_;
  bool maintenance_ = false;
  bool notifierReady_ = false;
  asio::steady_timer tickTimer_{io_};
  std::atomic<std::chrono::steady_clock::rep> lastTick_{0};
  mutable std::mutex reloadMutex_;  // reloadStatus_ is read on the admin threads
  ReloadStatus reloadStatus_;
  Notifier notifier_;
  std::unique_ptr<WatchdogPinger> pinger_;
  mutable std::mutex snapshotMutex_;
  std::shared_ptr<const StatusSnapshot> snapshot_;
  std::chrono::steady_clock::time_point lastPublish_{};
  std::atomic<bool> attached_{false};
  bool stopping_ = false;
  // Appended to STATUS= while the last reload was refused or failed, so
  // `systemctl status` shows that the file on disk is not what runs.
  std::string reloadNote_;
};

}  // namespace

int runDaemon(const DaemonOptions& options) {
  Daemon d(options);
  return d.run();
}

}  // namespace xdplb::control
