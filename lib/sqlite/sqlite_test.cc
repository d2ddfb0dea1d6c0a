#include "lib/sqlite/sqlite.h"
#include "lib/sqlite/string_map.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

namespace berth::sqlite {
namespace {

class SqliteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/berth-sqlite-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(SqliteTest, MigrationsRunOnceAndInOrder) {
  std::vector<std::string> v1 = {"CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"};
  {
    auto db = Db::Open(dir_ + "/db", v1);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)->Prepare("INSERT INTO t VALUES (?, ?)")->Bind(1, "a").Bind(2, 1).Run().ok());
  }
  std::vector<std::string> v2 = v1;
  v2.push_back("ALTER TABLE t ADD COLUMN w TEXT");
  auto db = Db::Open(dir_ + "/db", v2);
  ASSERT_TRUE(db.ok()) << db.status();
  auto q = (*db)->Prepare("SELECT k, v, w FROM t");
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(*q->Step());
  EXPECT_EQ(q->Text(0), "a");
  EXPECT_EQ(q->Int(1), 1);
  EXPECT_TRUE(q->IsNull(2));
}

TEST_F(SqliteTest, ForEachRowVisitsEveryRowAndStopsAtAnError) {
  auto db = Db::Open(dir_ + "/db", {"CREATE TABLE t (v INTEGER)"});
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)->Exec("INSERT INTO t VALUES (1), (2), (3)").ok());
  auto q = (*db)->Prepare("SELECT v FROM t ORDER BY v");
  ASSERT_TRUE(q.ok());
  std::vector<int64_t> seen;
  ASSERT_TRUE(q->ForEachRow([&]() {
                 seen.push_back(q->Int(0));
                 return absl::OkStatus();
               }).ok());
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3}));

  auto again = (*db)->Prepare("SELECT v FROM t ORDER BY v");
  ASSERT_TRUE(again.ok());
  seen.clear();
  absl::Status st = again->ForEachRow([&]() -> absl::Status {
    seen.push_back(again->Int(0));
    return seen.size() == 2 ? absl::DataLossError("bad row") : absl::OkStatus();
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2}));
}

TEST_F(SqliteTest, NewerSchemaIsRefused) {
  ASSERT_TRUE(Db::Open(dir_ + "/db", {"CREATE TABLE a (x)", "CREATE TABLE b (x)"}).ok());
  auto db = Db::Open(dir_ + "/db", {"CREATE TABLE a (x)"});
  EXPECT_EQ(db.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SqliteTest, TransactionRollsBackOnError) {
  auto db = Db::Open(dir_ + "/db", {"CREATE TABLE t (k TEXT PRIMARY KEY)"});
  ASSERT_TRUE(db.ok());
  absl::Status st = (*db)->Transaction([&]() -> absl::Status {
    if (auto s = (*db)->Prepare("INSERT INTO t VALUES ('x')")->Run(); !s.ok()) {
      return s;
    }
    return absl::AbortedError("changed my mind");
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted);
  auto q = (*db)->Prepare("SELECT count(*) FROM t");
  ASSERT_TRUE(*q->Step());
  EXPECT_EQ(q->Int(0), 0);
  // A constraint violation is AlreadyExists.
  ASSERT_TRUE((*db)->Prepare("INSERT INTO t VALUES ('y')")->Run().ok());
  EXPECT_EQ((*db)->Prepare("INSERT INTO t VALUES ('y')")->Run().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(StringMapTest, RoundTripsAndRefusesWhatIsNotAMapOfStrings) {
  std::map<std::string, std::string> map = {{"a", "1"}, {"containerd.io/gc.ref.content.l.0", "x"},
                                            {"empty", ""}, {"quote\"", "\n"}};
  absl::StatusOr<std::map<std::string, std::string>> back = DecodeStringMap(EncodeStringMap(map));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, map);
  EXPECT_TRUE(DecodeStringMap("{}")->empty());
  for (const char* bad : {"", "[]", "{\"a\": 1}", "{\"a\": \"1\"", "null"}) {
    EXPECT_EQ(DecodeStringMap(bad).status().code(), absl::StatusCode::kDataLoss) << bad;
  }
  EXPECT_EQ(DecodeStringMap("{\"k\": [1]}").status().message(),
            "the value of \"k\" is not a string");
}

}  // namespace
}  // namespace berth::sqlite
