// A TCP echo server on standalone Asio (Debian's libasio-dev, header-only),
// written the way Asio's own examples write one: a session object kept
// alive by shared_ptr captures, and lambdas as completion handlers. The
// networking, the reactor and the handler dispatch are Asio's. Prints
// `ready <pid>` and `port <n>`; ends when stdin says `quit` or closes.
#include <unistd.h>

#include <asio.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <utility>

using asio::ip::tcp;

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket socket, int id) : socket_(std::move(socket)), id_(id) {}

  void start() { do_read(); }

 private:
  void do_read() {
    auto self(shared_from_this());
    int reads_before = reads_;
    socket_.async_read_some(
        asio::buffer(data_, max_length),
        [this, self, reads_before](std::error_code ec, std::size_t length) {
          if (!ec) {
            reads_ = reads_before + 1;
            bytes_seen_ += length;  // echo: a message has arrived
            do_write(length);
          }
        });
  }

  void do_write(std::size_t length) {
    auto self(shared_from_this());
    asio::async_write(socket_, asio::buffer(data_, length),
                      [this, self](std::error_code ec, std::size_t /*written*/) {
                        if (!ec) do_read();
                      });
  }

  tcp::socket socket_;
  int id_;
  int reads_ = 0;
  std::size_t bytes_seen_ = 0;
  enum { max_length = 1024 };
  char data_[max_length];
};

class server {
 public:
  explicit server(asio::io_context& io)
      : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    do_accept();
  }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }

 private:
  void do_accept() {
    acceptor_.async_accept([this](std::error_code ec, tcp::socket socket) {
      if (!ec) std::make_shared<session>(std::move(socket), ++sessions_)->start();
      do_accept();
    });
  }

  tcp::acceptor acceptor_;
  int sessions_ = 0;
};

int main() {
  asio::io_context io;
  server s(io);
  auto work = asio::make_work_guard(io);
  std::thread runner([&io] { io.run(); });
  std::cout << "ready " << getpid() << "\nport " << s.port() << std::endl;
  std::string line;
  while (std::getline(std::cin, line) && line != "quit") {
  }
  io.stop();
  runner.join();
  return 0;
}
