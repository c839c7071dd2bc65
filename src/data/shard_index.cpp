#include "coca/data/shard_index.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>

#include "coca/tensor/error.h"

namespace coca {

std::string shard_file_name(int64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "shard-%05lld.h5", static_cast<long long>(i));
  return buf;
}

std::string ShardIndex::shard_path(const std::string& dir, size_t i) const {
  return (std::filesystem::path(dir) / shards.at(i).file).string();
}

int64_t ShardIndex::vocab_size() const {
  if (!tokenizer.is_object() || !tokenizer.contains("vocab_size")) return 0;
  const auto& v = tokenizer.at("vocab_size");
  COCA_CHECK(v.is_number_integer(), "shard index: tokenizer.vocab_size is not an integer: ", v.dump());
  return v.get<int64_t>();
}

nlohmann::json ShardIndex::to_json() const {
  nlohmann::json j;
  j["format"] = kShardFormatName;
  j["format_version"] = format_version;
  j["total_samples"] = total_samples;
  j["num_shards"] = shards.size();
  j["image_format"] = image_format;
  j["image_size"] = image_size;
  j["chunk_images"] = chunk_images;
  j["compression"] = compression;
  j["checksum"] = checksum;
  j["context_length"] = context_length;
  j["tokenizer"] = tokenizer;
  j["source"] = source;
  j["command"] = command;
  if (!classnames.empty()) {
    j["num_classes"] = classnames.size();
    j["classnames"] = classnames;
  }
  nlohmann::json list = nlohmann::json::array();
  for (const auto& s : shards) list.push_back({{"file", s.file}, {"samples", s.samples}});
  j["shards"] = list;
  if (!extra.is_null()) j["extra"] = extra;
  return j;
}

namespace {

// The integer at `key` (or `def` when absent): a JSON integer within T's range. A float or an
// out-of-range number is malformed, not cast (9.2e19 as an int would be undefined).
template <typename T>
T integer_field(const nlohmann::json& j, const char* key, const std::string& where,
                std::optional<T> def = std::nullopt) {
  if (def && !(j.is_object() && j.contains(key))) return *def;
  const nlohmann::json& v = j.at(key);  // throws for a missing key: "malformed index"
  const bool ok = v.is_number_unsigned()  ? v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                  : v.is_number_integer() ? v.get<int64_t>() >= std::numeric_limits<T>::min() &&
                                                v.get<int64_t>() <= std::numeric_limits<T>::max()
                                          : false;
  COCA_CHECK(ok, where, ": ", key, " must be an integer in [", std::numeric_limits<T>::min(), ", ",
             std::numeric_limits<T>::max(), "], not ", v.dump());
  return static_cast<T>(v.get<int64_t>());
}

}  // namespace

ShardIndex ShardIndex::from_json(const nlohmann::json& j, const std::string& where) {
  try {
    COCA_CHECK(j.value("format", std::string()) == kShardFormatName, where, ": not a ", kShardFormatName, " index");
    ShardIndex idx;
    idx.format_version = integer_field<int>(j, "format_version", where);
    COCA_CHECK(idx.format_version == kShardFormatVersion || idx.format_version == kShardFormatVersionEncoded, where,
               ": format_version ", idx.format_version, " is not supported (this build reads ", kShardFormatVersion,
               " and ", kShardFormatVersionEncoded, ")");
    idx.image_format = j.value("image_format", std::string("raw"));
    const std::string expected = idx.format_version == kShardFormatVersionEncoded ? "jpeg" : "raw";
    COCA_CHECK(idx.image_format == expected, where, ": image_format '", idx.image_format, "' does not go with format_version ",
               idx.format_version, " (which stores ", expected, ")");
    idx.total_samples = integer_field<int64_t>(j, "total_samples", where);
    idx.image_size = integer_field<int>(j, "image_size", where);
    idx.chunk_images = integer_field<int>(j, "chunk_images", where, 0);
    idx.compression = j.value("compression", std::string("none"));
    idx.checksum = j.value("checksum", std::string("none"));
    idx.context_length = integer_field<int>(j, "context_length", where, 0);
    idx.tokenizer = j.value("tokenizer", nlohmann::json());
    if (idx.tokenizer.is_object() && idx.tokenizer.contains("vocab_size")) {
      const auto& v = idx.tokenizer.at("vocab_size");
      COCA_CHECK(v.is_number_integer() && v.get<int64_t>() > 0, where,
                 ": tokenizer.vocab_size must be a positive integer, not ", v.dump());
    }
    idx.source = j.value("source", nlohmann::json());
    idx.command = j.value("command", std::string());
    if (j.contains("classnames")) idx.classnames = j.at("classnames").get<std::vector<std::string>>();
    if (j.contains("extra")) idx.extra = j.at("extra");
    int64_t sum = 0;
    for (const auto& s : j.at("shards")) {
      ShardEntry e{s.at("file").get<std::string>(), integer_field<int64_t>(s, "samples", where)};
      COCA_CHECK(e.samples >= 0, where, ": shard ", e.file, " has a negative sample count");
      COCA_CHECK(e.samples <= std::numeric_limits<int64_t>::max() - sum, where, ": shard counts add up past 2^63");
      sum += e.samples;
      idx.shards.push_back(std::move(e));
    }
    COCA_CHECK(sum == idx.total_samples, where, ": shard counts add up to ", sum, " but total_samples is ",
               idx.total_samples);
    return idx;
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(where, ": malformed index: ", e.what()));
  }
}

ShardIndex ShardIndex::load(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "index.json").string();
  std::ifstream f(path);
  COCA_CHECK(f.good(), "cannot open shard index ", path);
  nlohmann::json j;
  try {
    f >> j;
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(path, ": not valid JSON: ", e.what()));
  }
  return from_json(j, path);
}

void ShardIndex::save(const std::string& dir) const {
  const std::filesystem::path path = std::filesystem::path(dir) / "index.json";
  const std::string tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp);
    COCA_CHECK(f.good(), "cannot create ", tmp);
    f << to_json().dump(2) << "\n";
    f.close();
    COCA_CHECK(f.good(), "writing ", tmp, " failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  COCA_CHECK(!ec, "renaming ", tmp, " to ", path.string(), ": ", ec.message());
}

}  // namespace coca
