#pragma once

// containerd's filter syntax (containerd/filters): a filter is a comma-separated conjunction of
// selectors `fieldpath op value`, where fieldpath is dot-separated (quoted parts allowed:
// labels."com.example/x"), op is ==, != or ~= (RE2 regex), value is a bare word or a quoted
// string; a bare fieldpath tests presence. A list of filters is their disjunction.
// Examples: `labels."foo"==bar`, `name~=^nginx,labels.env!=prod`, `topic=="/tasks/exit"`.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace berth::filters {

// Looks up a field of the object being matched; nullopt if it has no such field.
using Adaptor =
    std::function<std::optional<std::string>(const std::vector<std::string>& fieldpath)>;

class Filter {
 public:
  // Parses one filter string. Malformed input is InvalidArgument with the position and reason.
  static absl::StatusOr<Filter> Parse(absl::string_view text);
  // Parses a list (OR of each); an empty list matches everything.
  static absl::StatusOr<Filter> ParseAll(const std::vector<std::string>& texts);

  // True if the adaptor's object passes. Semantics follow containerd: `f` needs the field
  // present; `f==v` needs it present and equal; `f!=v` and `f~=re` treat an absent field as ""
  // (so `labels.x!=y` matches objects without label x). ~= is an unanchored RE2 search.
  // An empty std::function adaptor sees every field as absent. Thread-safe; a Filter is
  // immutable and cheap to copy (shared, const parse tree).
  bool Match(const Adaptor& adaptor) const;

  // True for the empty filter (Parse(""), ParseAll({}), or a default-constructed Filter).
  bool MatchesEverything() const { return root_ == nullptr; }

  struct Node;  // implementation detail

 private:
  std::shared_ptr<const Node> root_;  // null: matches everything
};

// An Adaptor for the common shape {plain fields} + labels.<key>.
// `labels.a.b` looks up the label "a.b" (the path after "labels" joined with dots), nullopt if
// `labels` is null or has no such key. Any other path goes to `fields`: a one-part path as is,
// a longer one joined with dots ("target.digest"). `fields` may be empty (no plain fields).
// containerd treats an empty string field (e.g. an unset name) as absent: return nullopt for it
// to match ctr's behaviour. `labels` is not copied: it must outlive the returned Adaptor.
Adaptor MakeAdaptor(std::function<std::optional<std::string>(absl::string_view field)> fields,
                    const std::map<std::string, std::string>* labels);

}  // namespace berth::filters
