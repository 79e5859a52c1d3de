// The uWebSockets peer of the benchmark: the same protocol as the other relays. Rooms are
// `/room/<name>`; every text frame a client sends goes to every member of its room, the
// sender included, through uWS's own pub/sub (a topic per room, `app.publish`). One
// thread, and uWS's defaults otherwise, as its users run it: compression off, 16 KiB
// messages at most, a 120 s idle timeout with automatic pings, and a 64 KiB backpressure
// limit past which `publish` skips a socket (a slow reader loses messages; it is not
// closed). That last default is what keeps uWS's memory flat in W4, and what costs the
// slow readers their messages; Rookery's slow-consumer policy is documented in docs/CONFIG.md.
//
// `peer_uws --listen 127.0.0.1:0` prints `listening on ADDR` once ready (like peer_tokio).

#include "App.h"
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

struct Member {
    std::string room;
};

int main(int argc, char **argv) {
    std::string host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i + 1 < argc; i++) {
        if (std::strcmp(argv[i], "--listen") == 0) {
            std::string listen = argv[i + 1];
            auto colon = listen.rfind(':');
            host = listen.substr(0, colon);
            port = std::stoi(listen.substr(colon + 1));
        }
    }
    uWS::App app;
    app.ws<Member>("/*", {
        .compression = uWS::DISABLED,
        .upgrade = [](auto *res, auto *req, auto *context) {
            std::string_view url = req->getUrl();
            std::string_view prefix = "/room/";
            std::string room(url.substr(0, prefix.size()) == prefix ? url.substr(prefix.size()) : url);
            res->template upgrade<Member>({std::move(room)},
                                          req->getHeader("sec-websocket-key"),
                                          req->getHeader("sec-websocket-protocol"),
                                          req->getHeader("sec-websocket-extensions"),
                                          context);
        },
        .open = [](auto *ws) { ws->subscribe(ws->getUserData()->room); },
        .message = [&app](auto *ws, std::string_view message, uWS::OpCode opCode) {
            if (opCode == uWS::OpCode::TEXT) {
                app.publish(ws->getUserData()->room, message, opCode, false);
            }
        },
    });
    app.listen(host, port, [](auto *socket) {
        if (!socket) {
            std::fprintf(stderr, "peer_uws: cannot listen\n");
            std::exit(1);
        }
        int bound = us_socket_local_port(0, (struct us_socket_t *) socket);
        std::printf("listening on 127.0.0.1:%d\n", bound);
        std::fflush(stdout);
    });
    app.run();
}
