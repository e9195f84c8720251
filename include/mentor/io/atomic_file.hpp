#pragma once
// Atomic file replacement: the bytes go to a temporary file beside the target, which is fsynced and
// then renamed over the target, and the directory is fsynced so the rename itself survives a crash.
// A reader therefore sees either the old file or the complete new one, never a torn write (a
// checkpoint interrupted by a kill or a full disk leaves the previous checkpoint intact).
//
// POSIX only. Every failure removes the temporary file and throws mentor::Error naming the path and
// the errno text.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "mentor/core/error.hpp"

namespace mentor::io {

namespace detail {

inline std::string errno_text(int error_number) {
  return std::system_category().message(error_number);
}

// The directory holding `path` ("." for a bare file name), whose entry the rename changes.
inline std::string parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// A per-process sequence number, so two threads writing the same target never share a temp file.
inline uint64_t next_temp_sequence() {
  static std::atomic<uint64_t> sequence{0};
  return sequence.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace detail

// Writes `<target>.tmp.<pid>.<n>` and renames it over `target` on commit(). Destroying an
// uncommitted AtomicFile removes the temporary file and leaves the target untouched.
class AtomicFile {
 public:
  explicit AtomicFile(std::string target_path) : target_path_(std::move(target_path)) {
    MENTOR_CHECK(!target_path_.empty(), "atomic write: empty target path");
    temp_path_ = mentor::detail::concat(target_path_, ".tmp.", ::getpid(), ".",
                                        detail::next_temp_sequence());
    fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) {
      const int error_number = errno;
      throw Error(mentor::detail::concat("atomic write of '", target_path_,
                                         "': cannot create temporary file '", temp_path_,
                                         "': ", detail::errno_text(error_number)));
    }
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() { abandon(); }

  const std::string& target_path() const { return target_path_; }
  const std::string& temp_path() const { return temp_path_; }

  void write(const void* data, size_t size) {
    MENTOR_CHECK(fd_ >= 0 && !committed_, "atomic write of '", target_path_,
                 "': write after commit or failure");
    const char* cursor = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t written = ::write(fd_, cursor, size);
      if (written < 0) {
        const int error_number = errno;
        if (error_number == EINTR) continue;
        fail("cannot write temporary file '" + temp_path_ + "'", error_number);
      }
      cursor += written;
      size -= static_cast<size_t>(written);
    }
  }
  void write(std::span<const std::byte> bytes) { write(bytes.data(), bytes.size()); }
  void write(std::string_view text) { write(text.data(), text.size()); }

  // fsync the file, rename it over the target, fsync the directory.
  void commit() {
    MENTOR_CHECK(fd_ >= 0 && !committed_, "atomic write of '", target_path_,
                 "': commit after commit or failure");
    if (::fsync(fd_) != 0) {
      const int error_number = errno;
      fail("cannot fsync temporary file '" + temp_path_ + "'", error_number);
    }
    if (::close(std::exchange(fd_, -1)) != 0) {
      const int error_number = errno;
      fail("cannot close temporary file '" + temp_path_ + "'", error_number);
    }
    if (::rename(temp_path_.c_str(), target_path_.c_str()) != 0) {
      const int error_number = errno;
      fail("cannot rename '" + temp_path_ + "' over it", error_number);
    }
    committed_ = true;
    sync_directory();
  }

 private:
  [[noreturn]] void fail(const std::string& what, int error_number) {
    abandon();
    throw Error(mentor::detail::concat("atomic write of '", target_path_, "': ", what, ": ",
                                       detail::errno_text(error_number)));
  }

  void abandon() noexcept {
    if (committed_) return;
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
    temp_path_.clear();
  }

  // The rename is durable only once the directory entry is on disk. Some filesystems cannot fsync
  // a directory (EINVAL); the data is then as durable as that filesystem allows.
  void sync_directory() const {
    const std::string directory = detail::parent_directory(target_path_);
    const int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
      const int error_number = errno;
      throw Error(mentor::detail::concat("atomic write of '", target_path_,
                                         "': cannot open directory '", directory,
                                         "' to fsync it: ", detail::errno_text(error_number)));
    }
    const int status = ::fsync(dir_fd);
    const int error_number = errno;
    ::close(dir_fd);
    if (status != 0 && error_number != EINVAL && error_number != ENOTSUP) {
      throw Error(mentor::detail::concat("atomic write of '", target_path_,
                                         "': cannot fsync directory '", directory,
                                         "': ", detail::errno_text(error_number)));
    }
  }

  std::string target_path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Replace `path` with `contents` atomically.
inline void write_file_atomically(const std::string& path, std::span<const std::byte> contents) {
  AtomicFile file(path);
  file.write(contents);
  file.commit();
}

inline void write_file_atomically(const std::string& path, std::string_view contents) {
  AtomicFile file(path);
  file.write(contents);
  file.commit();
}

}  // namespace mentor::io
