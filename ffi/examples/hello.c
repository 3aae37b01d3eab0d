/*
 * libcoord's example: start a coord server inside this process, connect to it, write and read
 * a node, watch it, and take a lock.
 *
 *   cc hello.c $(pkg-config --cflags --libs coord) -Wl,-rpath,$(pkg-config --variable=libdir coord)
 *   ./a.out [DATA_DIR]
 *
 * Pass a connection string as the second argument to use a running server instead:
 *   ./a.out - 127.0.0.1:2181
 */
#define _DEFAULT_SOURCE /* usleep */
#include <coord.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(call)                                                                    \
    do {                                                                               \
        coord_result rc_ = (call);                                                     \
        if (rc_ != COORD_OK) {                                                         \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, coord_strerror(rc_)); \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/* Called on the client's event thread when the watched node changes. */
static void on_change(void *context, const coord_event *event) {
    int *fired = context;
    printf("watch: event %d on %s\n", event->event_type, event->path);
    *fired = 1;
}

int main(int argc, char **argv) {
    const char *data_dir = argc > 1 ? argv[1] : "coord-example-data";
    coord_server *server = NULL;
    const char *connect = argc > 2 ? argv[2] : NULL;
    if (connect == NULL) {
        CHECK(coord_server_start(data_dir, "127.0.0.1:0", &server));
        connect = coord_server_address(server);
        printf("embedded server on %s (libcoord %s)\n", connect, coord_version());
    }

    coord_client *client = NULL;
    CHECK(coord_client_open(connect, 10000, &client));

    const char *greeting = "hello from C";
    coord_result rc = coord_create(client, "/greeting", (const uint8_t *)greeting, strlen(greeting),
                                   NULL, 0, COORD_PERSISTENT, 0, NULL);
    if (rc != COORD_OK && rc != COORD_NODE_EXISTS) {
        fprintf(stderr, "create: %s\n", coord_strerror(rc));
        return 1;
    }

    uint8_t *data = NULL;
    size_t len = 0;
    coord_stat stat;
    CHECK(coord_get(client, "/greeting", &data, &len, &stat));
    printf("/greeting = \"%.*s\" (version %d)\n", (int)len, (const char *)data, stat.version);
    coord_buffer_free(data, len);

    volatile int fired = 0;
    CHECK(coord_watch_data(client, "/greeting", on_change, (void *)&fired));
    CHECK(coord_set(client, "/greeting", (const uint8_t *)"changed", 7, -1, NULL));
    for (int i = 0; i < 500 && !fired; i++) usleep(10000);

    coord_lock *lock = NULL;
    CHECK(coord_lock_acquire(client, "/locks/example", -1, &lock));
    printf("holding the lock\n");
    CHECK(coord_lock_release(lock));

    coord_string_list children;
    CHECK(coord_children(client, "/", &children));
    for (size_t i = 0; i < children.len; i++) printf("child: %s\n", children.items[i]);
    coord_string_list_free(&children);

    coord_client_free(client);
    coord_server_stop(server);
    return fired ? 0 : 1;
}
