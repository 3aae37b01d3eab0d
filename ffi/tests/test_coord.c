/*
 * libcoord's C test program: every function against an embedded server, from several threads,
 * with the server going away in the middle of a call. Run under valgrind by
 * scripts/test-c.sh: no leak, no invalid access.
 *
 *   test_coord DATA_DIR
 */
#define _DEFAULT_SOURCE /* usleep */
#include <coord.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;

#define EXPECT(cond)                                                         \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

#define EXPECT_RC(call, want)                                                           \
    do {                                                                                \
        coord_result rc_ = (call);                                                      \
        if (rc_ != (want)) {                                                            \
            fprintf(stderr, "%s:%d: %s: got %s (%u), want %s\n", __FILE__, __LINE__, #call, \
                    coord_strerror(rc_), (unsigned)rc_, #want);                         \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

#define OK(call) EXPECT_RC(call, COORD_OK)

static const uint8_t *bytes(const char *text) { return (const uint8_t *)text; }

/* Waits up to 5 s for *flag to reach want. */
static int wait_for(atomic_int *flag, int want) {
    for (int i = 0; i < 500; i++) {
        if (atomic_load(flag) >= want) return 1;
        usleep(10000);
    }
    return 0;
}

static void test_results_and_arguments(const char *connect) {
    for (unsigned rc = 0; rc <= COORD_LAGGED; rc++) EXPECT(coord_strerror(rc) != NULL);
    EXPECT(coord_strerror(9999) != NULL);
    EXPECT(strlen(coord_version()) > 0);

    coord_client *sentinel = (coord_client *)0x1;
    coord_client *out = sentinel;
    EXPECT_RC(coord_client_open(NULL, 5000, &out), COORD_NULL_ARGUMENT);
    EXPECT_RC(coord_client_open("nonsense", 5000, &out), COORD_BAD_CONNECT_STRING);
    EXPECT_RC(coord_client_open("127.0.0.1:1", 5000, &out), COORD_UNREACHABLE);
    EXPECT(out == sentinel); /* untouched on error */
    EXPECT_RC(coord_client_open(connect, 5000, NULL), COORD_NULL_ARGUMENT);
    EXPECT_RC(coord_delete(NULL, "/x", -1), COORD_NULL_ARGUMENT);
    coord_client_free(NULL);
    coord_string_free(NULL);
    coord_buffer_free(NULL, 0);
    coord_string_list_free(NULL);
    coord_acl_list_free(NULL);
    coord_server_stop(NULL);
    EXPECT_RC(coord_lock_release(NULL), COORD_OK);
    EXPECT_RC(coord_leadership_resign(NULL), COORD_OK);
}

static void test_operations(coord_client *c) {
    char *path = NULL;
    OK(coord_create(c, "/t", bytes("top"), 3, NULL, 0, COORD_PERSISTENT, 0, &path));
    EXPECT(path && strcmp(path, "/t") == 0);
    coord_string_free(path);
    EXPECT_RC(coord_create(c, "/t", NULL, 0, NULL, 0, COORD_PERSISTENT, 0, NULL), COORD_NODE_EXISTS);
    EXPECT_RC(coord_create(c, "no-slash", NULL, 0, NULL, 0, COORD_PERSISTENT, 0, NULL), COORD_BAD_ARGUMENTS);
    EXPECT_RC(coord_create(c, "/t/x", NULL, 5, NULL, 0, COORD_PERSISTENT, 0, NULL), COORD_NULL_ARGUMENT);
    EXPECT_RC(coord_create(c, "/t/x", NULL, 0, NULL, 0, 99, 0, NULL), COORD_BAD_ARGUMENTS);

    path = NULL;
    OK(coord_create(c, "/t/s-", NULL, 0, NULL, 0, COORD_PERSISTENT_SEQUENTIAL, 0, &path));
    EXPECT(path && strcmp(path, "/t/s-0000000000") == 0);
    coord_string_free(path);
    OK(coord_create(c, "/t/e", NULL, 0, NULL, 0, COORD_EPHEMERAL, 0, NULL));
    EXPECT_RC(coord_create(c, "/t/e/child", NULL, 0, NULL, 0, COORD_PERSISTENT, 0, NULL),
              COORD_NO_CHILDREN_FOR_EPHEMERALS);
    OK(coord_create(c, "/t/box", NULL, 0, NULL, 0, COORD_CONTAINER, 0, NULL));
    OK(coord_create(c, "/t/ttl", NULL, 0, NULL, 0, COORD_PERSISTENT_WITH_TTL, 60000, NULL));
    EXPECT_RC(coord_create(c, "/t/ttl0", NULL, 0, NULL, 0, COORD_PERSISTENT_WITH_TTL, 0, NULL),
              COORD_BAD_ARGUMENTS);

    uint8_t *data = NULL;
    size_t len = 99;
    coord_stat stat;
    OK(coord_get(c, "/t", &data, &len, &stat));
    EXPECT(len == 3 && memcmp(data, "top", 3) == 0 && stat.version == 0 && stat.num_children == 4);
    coord_buffer_free(data, len);
    data = NULL;
    len = 99;
    EXPECT_RC(coord_get(c, "/none", &data, &len, NULL), COORD_NO_NODE);
    EXPECT(data == NULL && len == 99);

    OK(coord_set(c, "/t", bytes("new"), 3, 0, &stat));
    EXPECT(stat.version == 1);
    EXPECT_RC(coord_set(c, "/t", bytes("old"), 3, 0, NULL), COORD_BAD_VERSION);

    bool exists = false;
    OK(coord_exists(c, "/t/e", &exists, &stat));
    EXPECT(exists && stat.ephemeral_owner != 0);
    OK(coord_exists(c, "/t/none", &exists, NULL));
    EXPECT(!exists);

    coord_string_list children;
    OK(coord_children(c, "/t", &children));
    EXPECT(children.len == 4);
    int saw_box = 0;
    for (size_t i = 0; i < children.len; i++) saw_box |= strcmp(children.items[i], "box") == 0;
    EXPECT(saw_box);
    coord_string_list_free(&children);
    EXPECT(children.items == NULL && children.len == 0);

    EXPECT_RC(coord_delete(c, "/t", -1), COORD_NOT_EMPTY);
    EXPECT_RC(coord_delete(c, "/t/s-0000000000", 7), COORD_BAD_VERSION);
    OK(coord_delete(c, "/t/s-0000000000", 0));
    OK(coord_sync(c, "/t"));

    coord_op ops[] = {
        {COORD_OP_CREATE, "/t/m", bytes("m"), 1, 0, COORD_PERSISTENT},
        {COORD_OP_SET, "/t", bytes("multi"), 5, 1, COORD_PERSISTENT},
        {COORD_OP_CHECK, "/t/m", NULL, 0, 0, COORD_PERSISTENT},
    };
    OK(coord_multi(c, ops, 3));
    coord_op failing[] = {
        {COORD_OP_CREATE, "/t/m2", NULL, 0, 0, COORD_PERSISTENT},
        {COORD_OP_DELETE, "/t/none", NULL, 0, -1, COORD_PERSISTENT},
    };
    EXPECT_RC(coord_multi(c, failing, 2), COORD_NO_NODE);
    coord_op zeroed[1];
    memset(zeroed, 0, sizeof zeroed);
    zeroed[0].path = "/t/zero";
    EXPECT_RC(coord_multi(c, zeroed, 1), COORD_BAD_ARGUMENTS); /* kind 0 names no op */
    OK(coord_exists(c, "/t/m2", &exists, NULL));
    EXPECT(!exists); /* all or nothing */

    /* ACLs and auth. */
    coord_acl_list acl;
    OK(coord_get_acl(c, "/t/m", &acl, &stat));
    EXPECT(acl.len == 1 && acl.acls[0].perms == COORD_PERM_ALL && strcmp(acl.acls[0].scheme, "world") == 0 &&
           strcmp(acl.acls[0].id, "anyone") == 0);
    coord_acl_list_free(&acl);
    coord_acl read_only = {COORD_PERM_READ, "world", "anyone"};
    OK(coord_set_acl(c, "/t/m", &read_only, 1, -1));
    EXPECT_RC(coord_set(c, "/t/m", NULL, 0, -1, NULL), COORD_NO_AUTH);
    OK(coord_add_auth(c, "digest", bytes("alice:secret"), 12));
    coord_acl mine = {COORD_PERM_ALL, "auth", ""};
    OK(coord_create(c, "/t/alice", bytes("a"), 1, &mine, 1, COORD_PERSISTENT, 0, NULL));
    OK(coord_get(c, "/t/alice", &data, &len, NULL));
    coord_buffer_free(data, len);
    coord_acl bad = {COORD_PERM_ALL, "no-such-scheme", "x"};
    EXPECT_RC(coord_create(c, "/t/bad", NULL, 0, &bad, 1, COORD_PERSISTENT, 0, NULL), COORD_INVALID_ACL);

    int64_t session = 0;
    OK(coord_client_session_id(c, &session));
    EXPECT(session != 0);
    coord_state state = COORD_LOST;
    OK(coord_client_state(c, &state));
    EXPECT(state == COORD_CONNECTED);
}

struct watched {
    atomic_int fired;
    atomic_int last_type;
    pthread_t main_thread;
    atomic_int on_main_thread;
};

static void on_event(void *context, const coord_event *event) {
    struct watched *w = context;
    if (pthread_equal(pthread_self(), w->main_thread)) atomic_store(&w->on_main_thread, 1);
    if (event->result == COORD_OK) {
        atomic_store(&w->last_type, event->event_type);
        EXPECT(event->path != NULL && event->path[0] == '/');
    }
    atomic_fetch_add(&w->fired, 1);
}

static void test_watches(coord_client *c, coord_client *other) {
    struct watched data = {0}, exists = {0}, children = {0}, tree = {0};
    data.main_thread = exists.main_thread = children.main_thread = tree.main_thread = pthread_self();
    OK(coord_create(c, "/w", NULL, 0, NULL, 0, COORD_PERSISTENT, 0, NULL));
    OK(coord_watch_data(c, "/w", on_event, &data));
    OK(coord_watch_exists(c, "/w/new", on_event, &exists));
    OK(coord_watch_children(c, "/w", on_event, &children));
    OK(coord_watch_persistent(c, "/w", true, on_event, &tree));
    EXPECT_RC(coord_watch_data(c, "/w/none", on_event, &data), COORD_NO_NODE);
    EXPECT_RC(coord_watch_data(c, "/w", NULL, &data), COORD_NULL_ARGUMENT);

    OK(coord_set(other, "/w", bytes("x"), 1, -1, NULL));
    OK(coord_create(other, "/w/new", NULL, 0, NULL, 0, COORD_PERSISTENT, 0, NULL));
    EXPECT(wait_for(&data.fired, 1) && atomic_load(&data.last_type) == 3);
    EXPECT(wait_for(&exists.fired, 1) && atomic_load(&exists.last_type) == 1);
    EXPECT(wait_for(&children.fired, 1) && atomic_load(&children.last_type) == 4);
    EXPECT(wait_for(&tree.fired, 2));
    OK(coord_set(other, "/w/new", bytes("y"), 1, -1, NULL));
    EXPECT(wait_for(&tree.fired, 3) && atomic_load(&tree.last_type) == 3);
    OK(coord_remove_persistent_watch(c, "/w", true));
    EXPECT(wait_for(&tree.fired, 4) && atomic_load(&tree.last_type) == 7);
    EXPECT_RC(coord_remove_persistent_watch(c, "/w", true), COORD_NO_WATCHER);
    /* One-shot: fired once only. */
    OK(coord_set(other, "/w", bytes("z"), 1, -1, NULL));
    OK(coord_sync(c, "/w"));
    usleep(100000);
    EXPECT(atomic_load(&data.fired) == 1);
    EXPECT(!data.on_main_thread && !tree.on_main_thread);
}

struct contender {
    coord_client *client;
    atomic_int *holding;
    atomic_int *overlaps;
    atomic_int *acquired;
};

static void *contend(void *arg) {
    struct contender *me = arg;
    for (int i = 0; i < 5; i++) {
        coord_lock *lock = NULL;
        OK(coord_lock_acquire(me->client, "/locks/shared", -1, &lock));
        if (atomic_fetch_add(me->holding, 1) != 0) atomic_fetch_add(me->overlaps, 1);
        usleep(2000);
        atomic_fetch_sub(me->holding, 1);
        atomic_fetch_add(me->acquired, 1);
        OK(coord_lock_release(lock));
    }
    return NULL;
}

/* Four threads share one client (and one more has its own), each taking the lock in turn. */
static void test_threads_and_lock(coord_client *c, const char *connect) {
    coord_client *own = NULL;
    OK(coord_client_open(connect, 10000, &own));
    atomic_int holding = 0, overlaps = 0, acquired = 0;
    pthread_t threads[5];
    struct contender contenders[5];
    for (int i = 0; i < 5; i++) {
        contenders[i] = (struct contender){i < 4 ? c : own, &holding, &overlaps, &acquired};
        pthread_create(&threads[i], NULL, contend, &contenders[i]);
    }
    for (int i = 0; i < 5; i++) pthread_join(threads[i], NULL);
    EXPECT(atomic_load(&acquired) == 25);
    EXPECT(atomic_load(&overlaps) == 0);

    coord_lock *held = NULL, *other = (coord_lock *)0x1;
    OK(coord_lock_acquire(c, "/locks/timed", -1, &held));
    EXPECT_RC(coord_lock_acquire(own, "/locks/timed", 100, &other), COORD_TIMEOUT);
    EXPECT(other == (coord_lock *)0x1);
    OK(coord_lock_release(held));
    OK(coord_lock_acquire(own, "/locks/timed", 1000, &other));
    coord_lock_free(other); /* released in the background */
    held = NULL;
    OK(coord_lock_acquire(c, "/locks/timed", 5000, &held));
    OK(coord_lock_release(held));

    /* Election. */
    coord_leadership *leader = NULL, *second = NULL;
    OK(coord_election_campaign(c, "/election", bytes("one"), 3, -1, &leader));
    bool lost = true;
    OK(coord_leadership_wait_lost(leader, 100, &lost));
    EXPECT(!lost);
    EXPECT_RC(coord_election_campaign(own, "/election", bytes("two"), 3, 200, &second), COORD_TIMEOUT);
    OK(coord_leadership_resign(leader));
    OK(coord_election_campaign(own, "/election", bytes("two"), 3, 5000, &second));
    OK(coord_leadership_resign(second));
    coord_client_free(own);
}

struct blocked {
    coord_client *client;
    coord_result result;
};

static void *wait_for_lock(void *arg) {
    struct blocked *b = arg;
    coord_lock *lock = NULL;
    b->result = coord_lock_acquire(b->client, "/locks/gone", -1, &lock);
    if (b->result == COORD_OK) coord_lock_release(lock);
    return NULL;
}

/* The server stops while another thread waits in a call: the call returns an error, and
 * everything is freed cleanly. */
static void test_server_goes_away(coord_server *server, coord_client *c, const char *connect) {
    coord_client *waiter = NULL;
    OK(coord_client_open(connect, 4000, &waiter));
    coord_lock *held = NULL;
    OK(coord_lock_acquire(c, "/locks/gone", -1, &held));
    struct blocked b = {waiter, COORD_OK};
    pthread_t thread;
    pthread_create(&thread, NULL, wait_for_lock, &b);
    usleep(300000);
    coord_server_stop(server);
    pthread_join(thread, NULL);
    EXPECT(b.result == COORD_SESSION_EXPIRED || b.result == COORD_CONNECTION_LOSS);
    uint8_t *data = NULL;
    size_t len = 0;
    coord_result rc = coord_get(waiter, "/", &data, &len, NULL);
    EXPECT(rc == COORD_SESSION_EXPIRED || rc == COORD_CONNECTION_LOSS);
    EXPECT_RC(coord_lock_release(held), COORD_SESSION_EXPIRED);
    coord_client_free(waiter);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_coord DATA_DIR\n");
        return 2;
    }
    coord_server *server = NULL;
    OK(coord_server_start(argv[1], NULL, &server));
    if (server == NULL) return 1;
    char connect[64];
    snprintf(connect, sizeof connect, "%s", coord_server_address(server));

    test_results_and_arguments(connect);
    coord_client *c = NULL, *other = NULL;
    OK(coord_client_open(connect, 4000, &c));
    OK(coord_client_open(connect, 10000, &other));
    test_operations(c);
    test_watches(c, other);
    test_threads_and_lock(c, connect);
    coord_client_free(other);
    test_server_goes_away(server, c, connect);
    coord_client_free(c);

    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("test_coord: all passed\n");
    return 0;
}
