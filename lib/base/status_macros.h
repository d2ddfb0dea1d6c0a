#pragma once

// Early returns for absl::Status and absl::StatusOr<T>, so a function reads as its steps:
//
//   BERTH_RETURN_IF_ERROR(db.Exec("BEGIN"));
//   BERTH_ASSIGN_OR_RETURN(sqlite::Statement select, db.Prepare("SELECT ..."));
//   BERTH_ASSIGN_OR_RETURN(auto info, store.Info(ctx, digest));
//
// Both return the error unchanged; add context at the call site when the caller needs it
// (`if (!st.ok()) return Annotate(st, ...)`). `expr` is evaluated exactly once.

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define BERTH_STATUS_CONCAT_INNER_(a, b) a##b
#define BERTH_STATUS_CONCAT_(a, b) BERTH_STATUS_CONCAT_INNER_(a, b)

#define BERTH_RETURN_IF_ERROR(expr)                                          \
  do {                                                                       \
    ::absl::Status berth_status_ = (expr);                                   \
    if (!berth_status_.ok()) {                                               \
      return berth_status_;                                                  \
    }                                                                        \
  } while (false)

#define BERTH_ASSIGN_OR_RETURN(lhs, expr) \
  BERTH_ASSIGN_OR_RETURN_IMPL_(BERTH_STATUS_CONCAT_(berth_statusor_, __LINE__), lhs, expr)

#define BERTH_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                 \
  if (!statusor.ok()) {                                   \
    return std::move(statusor).status();                  \
  }                                                       \
  lhs = std::move(statusor).value()
