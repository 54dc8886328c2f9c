#include "blocking_interrupt.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "platform.h"

namespace iomux {

namespace {

// Our interrupts come from pthread_kill() in this process (on Linux: SI_TKILL, our pid). Anything
// else, a kill(1) from outside or a raise() elsewhere, gets the default action the application left
// on the signal: the handler restores it and raises the signal again, which is delivered as soon as
// the handler returns (the signal is blocked while it runs). Only async-signal-safe calls here.
void on_interrupt(int sig, siginfo_t* info, void*) {
  if (info != nullptr && platform::sent_by_own_thread(info->si_code, info->si_pid)) return;
  struct sigaction fallback{};
  fallback.sa_handler = SIG_DFL;
  sigemptyset(&fallback.sa_mask);
  (void)sigaction(sig, &fallback, nullptr);
  (void)raise(sig);
}

bool is_default(const struct sigaction& action) {
  return (action.sa_flags & SA_SIGINFO) == 0 && action.sa_handler == SIG_DFL;
}

bool is_ours(const struct sigaction& action) {
  return (action.sa_flags & SA_SIGINFO) != 0 && action.sa_sigaction == &on_interrupt;
}

// Installs the handler on sig if the signal is free. Between the look and the install another
// thread could set a handler; the install returns the disposition it replaced, and a replaced
// non-default one is put back.
bool take(int sig, const sigset_t& blocked) {
  if (sigismember(&blocked, sig) == 1) return false;
  struct sigaction current{};
  if (sigaction(sig, nullptr, &current) != 0 || !is_default(current)) return false;
  struct sigaction action{};
  action.sa_sigaction = &on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO;  // no SA_RESTART: the interrupted call must return
  struct sigaction replaced{};
  if (sigaction(sig, &action, &replaced) != 0) return false;
  if (is_default(replaced)) return true;
  (void)sigaction(sig, &replaced, nullptr);
  return false;
}

int choose() {
  sigset_t blocked;
  sigemptyset(&blocked);
  if (pthread_sigmask(SIG_BLOCK, nullptr, &blocked) != 0) return 0;
  int candidates[64];
  int count = platform::interrupt_candidates(candidates, 64);
  for (int i = 0; i < count; ++i) {
    if (take(candidates[i], blocked)) return candidates[i];
  }
  return 0;
}

}  // namespace

int interrupt_signal() {
  static const int chosen = choose();
  return chosen;
}

void unblock_interrupt() {
  int sig = interrupt_signal();
  if (sig == 0) return;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  (void)pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

bool interrupt_usable() {
  int sig = interrupt_signal();
  if (sig == 0) return false;
  struct sigaction current{};
  return sigaction(sig, nullptr, &current) == 0 && is_ours(current);
}

}  // namespace iomux
