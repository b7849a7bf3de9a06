#include "lb/common/caps.h"

#include <cap-ng.h>
#include <dirent.h>
#include <linux/capability.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace xdplb {

bool haveCapability(int cap) {
  if (capng_get_caps_process() != 0) return false;
  return capng_have_capability(CAPNG_EFFECTIVE, static_cast<unsigned>(cap)) != 0;
}

namespace {

// Capabilities belong to a thread, not to the process: capset(2), which
// libcap-ng's capng_apply calls, changes the calling thread only, so a drop
// made after the HTTP and grace-period threads started would leave them
// holding everything (docs/design.md, "Least privilege"). The new sets are
// therefore applied by every thread to itself: the caller first, then each
// other thread of /proc/self/task from a signal handler (capset and prctl are
// async-signal-safe system calls), as glibc does for setuid(2).
struct DropRequest {
  __user_cap_header_struct header{};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  sem_t done{};
  std::atomic<int> firstErrno{0};
};
std::atomic<DropRequest*> g_request{nullptr};

// 0 or the errno of the first call that failed.
int applyToThisThread(DropRequest& r) {
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    return errno;
  __user_cap_header_struct header = r.header;  // the kernel may write back its version
  if (::syscall(SYS_capset, &header, r.data) != 0) return errno;
  return 0;
}

void onDropSignal(int) {
  const int saved = errno;
  if (DropRequest* r = g_request.load()) {
    if (const int e = applyToThisThread(*r); e != 0) {
      int none = 0;
      r->firstErrno.compare_exchange_strong(none, e);
    }
    ::sem_post(&r->done);
  }
  errno = saved;
}

std::vector<pid_t> otherThreads() {
  std::vector<pid_t> out;
  DIR* dir = ::opendir("/proc/self/task");
  if (!dir) return out;
  const pid_t self = static_cast<pid_t>(::syscall(SYS_gettid));
  while (const dirent* e = ::readdir(dir)) {
    const pid_t tid = static_cast<pid_t>(std::atoi(e->d_name));
    if (tid > 0 && tid != self) out.push_back(tid);
  }
  ::closedir(dir);
  return out;
}

}  // namespace

Result<> keepOnlyCapabilities(std::initializer_list<int> keep) {
  // On the heap: after a timeout a late handler may still post to it, so it
  // is then left allocated rather than freed under that handler.
  auto owned = std::make_unique<DropRequest>();
  DropRequest& r = *owned;
  r.header.version = _LINUX_CAPABILITY_VERSION_3;
  r.header.pid = 0;
  __user_cap_data_struct now[_LINUX_CAPABILITY_U32S_3]{};
  if (::syscall(SYS_capget, &r.header, now) != 0)
    return errnoError(errno, "read the capabilities (capget)");
  for (int c : keep) {
    if (c < 0 || c > CAP_LAST_CAP) continue;
    const unsigned word = static_cast<unsigned>(c) / 32;
    const __u32 bit = 1U << (static_cast<unsigned>(c) % 32);
    if ((now[word].permitted & bit) == 0) continue;  // not held: nothing to keep
    r.data[word].permitted |= bit;
    r.data[word].effective |= bit;
  }
  if (const int e = applyToThisThread(r); e != 0)
    return errnoError(e, "drop capabilities (capset) on the main thread");

  if (::sem_init(&r.done, 0, 0) != 0) return errnoError(errno, "sem_init");
  struct sigaction action {
  }, previous{};
  action.sa_handler = onDropSignal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  const int sig = SIGRTMIN;
  g_request.store(&r);
  if (::sigaction(sig, &action, &previous) != 0) {
    const int e = errno;
    g_request.store(nullptr);
    ::sem_destroy(&r.done);
    return errnoError(e, "install the capability-drop signal handler");
  }
  // Threads may start while others are being signalled only if something
  // else creates them; list again until a pass finds no thread not yet done.
  std::set<pid_t> done;
  std::string failure;
  for (int pass = 0; pass < 10 && failure.empty(); ++pass) {
    size_t sent = 0;
    for (pid_t tid : otherThreads()) {
      if (done.contains(tid)) continue;
      done.insert(tid);
      if (::syscall(SYS_tgkill, ::getpid(), tid, sig) == 0) ++sent;
      // ESRCH: it exited meanwhile, nothing to drop.
    }
    if (sent == 0) break;
    for (size_t i = 0; i < sent; ++i) {
      timespec deadline{};
      ::clock_gettime(CLOCK_REALTIME, &deadline);
      deadline.tv_sec += 5;
      int rc;
      while ((rc = ::sem_timedwait(&r.done, &deadline)) != 0 && errno == EINTR) {
      }
      if (rc != 0) {
        failure = std::to_string(sent - i) + " thread(s) did not answer within 5 s (signal " +
                  std::to_string(sig) + " blocked?)";
        break;
      }
    }
  }
  ::sigaction(sig, &previous, nullptr);
  // A late handler (after a timeout) may still run: it finds no request.
  g_request.store(nullptr);
  if (!failure.empty()) {
    (void)owned.release();
    return makeError("drop capabilities on every thread: " + failure);
  }
  ::sem_destroy(&r.done);
  if (const int e = r.firstErrno.load(); e != 0)
    return errnoError(e, "drop capabilities (capset) on a thread of the daemon");
  return {};
}

std::string effectiveCapabilities() {
  if (capng_get_caps_process() != 0) return "?";
  char* text = capng_print_caps_text(CAPNG_PRINT_BUFFER, CAPNG_EFFECTIVE);
  if (!text) return "none";
  std::string out(text);
  std::free(text);
  return out.empty() ? "none" : out;
}

}  // namespace xdplb
