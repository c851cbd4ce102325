
/*
 * Copyright (C) ngx_studio_testusers_module authors
 *
 * The shared zone: every worker's view of the list Twilio last returned
 * for each flow (as keyed digests, never raw identities), least recently
 * used flows evicted first, and the counters.  The zone, its salt and its
 * contents survive a reload when its name and size stay the same.
 */


#include <openssl/rand.h>

#include "ngx_http_studio_testusers_module.h"


#define NGX_HTTP_STU_DEFAULT_ZONE_SIZE  (1024 * 1024)


typedef struct {
    ngx_rbtree_t                       rbtree;
    ngx_rbtree_node_t                  sentinel;
    ngx_queue_t                        lru;
    ngx_rbtree_t                       locks;
    ngx_rbtree_node_t                  locks_sentinel;
    u_char                             salt[32];
    ngx_http_studio_testusers_metrics_t      metrics;
} ngx_http_studio_testusers_sh_t;


/*
 * The nodes of both trees begin so.  They are ordered by a key taken from
 * the sid, then by the sid itself: keys may collide, and a client picks
 * the sids.
 */
typedef struct {
    ngx_rbtree_node_t                  node;
    u_char                             sid[STU_FLOW_SID_LEN];
} ngx_http_studio_testusers_sid_node_t;


/* "a POST for this flow is in flight": whose, so a dead worker's can go */
typedef struct {
    ngx_http_studio_testusers_sid_node_t   sn;
    ngx_pid_t                          pid;
    ngx_atomic_uint_t                  number;  /* connection number */
    void                              *owner;   /* r->main */
} ngx_http_studio_testusers_lock_t;


typedef struct {
    ngx_shm_zone_t                    *zone;
    ngx_http_studio_testusers_lock_t  *lock;
    ngx_atomic_uint_t                  number;
    ngx_pid_t                          pid;
} ngx_http_studio_testusers_unlock_t;


typedef struct {
    ngx_http_studio_testusers_sh_t    *sh;
    ngx_slab_pool_t                   *shpool;
} ngx_http_studio_testusers_zone_ctx_t;


typedef struct {
    ngx_http_studio_testusers_sid_node_t   sn;
    ngx_queue_t                        queue;
    u_char                             key_id[8];
    ngx_uint_t                         n;
    u_char                             digests[1];
} ngx_http_studio_testusers_flow_t;


static ngx_int_t ngx_http_studio_testusers_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_rbtree_key_t ngx_http_studio_testusers_sid_key(ngx_str_t *sid);
static void ngx_http_studio_testusers_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_studio_testusers_sid_node_t *ngx_http_studio_testusers_lookup(
    ngx_rbtree_t *tree, ngx_str_t *sid, ngx_rbtree_key_t key);


char *
ngx_http_studio_testusers_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_studio_testusers_main_conf_t *smcf = conf;

    u_char                                *p;
    ssize_t                                size;
    ngx_str_t                             *value, name, s;
    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    if (smcf->zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\": expected name:size",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    zctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_studio_testusers_zone_ctx_t));
    if (zctx == NULL) {
        return NGX_CONF_ERROR;
    }

    smcf->zone = ngx_shared_memory_add(cf, &name, size,
                                       &ngx_http_studio_testusers_module);
    if (smcf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (smcf->zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    smcf->zone->init = ngx_http_studio_testusers_init_zone;
    smcf->zone->data = zctx;

    return NGX_CONF_OK;
}


/* used when a feature needs the zone and none was configured */

ngx_int_t
ngx_http_studio_testusers_zone_default(ngx_conf_t *cf,
    ngx_http_studio_testusers_main_conf_t *smcf)
{
    ngx_str_t                              name;
    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    if (smcf->zone) {
        return NGX_OK;
    }

    zctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_studio_testusers_zone_ctx_t));
    if (zctx == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&name, "studio_testusers");

    smcf->zone = ngx_shared_memory_add(cf, &name,
                                       NGX_HTTP_STU_DEFAULT_ZONE_SIZE,
                                       &ngx_http_studio_testusers_module);
    if (smcf->zone == NULL) {
        return NGX_ERROR;
    }

    smcf->zone->init = ngx_http_studio_testusers_init_zone;
    smcf->zone->data = zctx;

    return NGX_OK;
}


static ngx_int_t
ngx_http_studio_testusers_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_studio_testusers_zone_ctx_t  *ozctx = data;

    size_t                                 len;
    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    zctx = shm_zone->data;

    if (ozctx) {
        /* a reload: keep the lists, the salt and the counters */
        zctx->sh = ozctx->sh;
        zctx->shpool = ozctx->shpool;
        return NGX_OK;
    }

    zctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zctx->sh = zctx->shpool->data;
        return NGX_OK;
    }

    zctx->sh = ngx_slab_alloc(zctx->shpool,
                              sizeof(ngx_http_studio_testusers_sh_t));
    if (zctx->sh == NULL) {
        return NGX_ERROR;
    }

    zctx->shpool->data = zctx->sh;

    ngx_rbtree_init(&zctx->sh->rbtree, &zctx->sh->sentinel,
                    ngx_http_studio_testusers_rbtree_insert);
    ngx_rbtree_init(&zctx->sh->locks, &zctx->sh->locks_sentinel,
                    ngx_http_studio_testusers_rbtree_insert);
    ngx_queue_init(&zctx->sh->lru);

    ngx_memzero(&zctx->sh->metrics,
                sizeof(ngx_http_studio_testusers_metrics_t));

    if (RAND_bytes(zctx->sh->salt, sizeof(zctx->sh->salt)) != 1) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "studio_testusers: RAND_bytes() failed");
        return NGX_ERROR;
    }

    len = sizeof(" in studio_testusers zone \"\"") + shm_zone->shm.name.len;

    zctx->shpool->log_ctx = ngx_slab_alloc(zctx->shpool, len);
    if (zctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zctx->shpool->log_ctx, " in studio_testusers zone \"%V\"%Z",
                &shm_zone->shm.name);

    zctx->shpool->log_nomem = 0;

    return NGX_OK;
}


/*
 * The tree key: eight digits of the sid as they are.  Sids are random
 * hex, so this spreads them; sids sharing those digits are told apart by
 * the whole sid, as in the tree's order.
 */

static ngx_rbtree_key_t
ngx_http_studio_testusers_sid_key(ngx_str_t *sid)
{
    uint32_t  a, b;

    ngx_memcpy(&a, sid->data + 2, 4);
    ngx_memcpy(&b, sid->data + 6, 4);

    return a ^ (b << 1 | b >> 31);
}


static void
ngx_http_studio_testusers_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                     **p;
    ngx_http_studio_testusers_sid_node_t   *n, *t;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            n = (ngx_http_studio_testusers_sid_node_t *) node;
            t = (ngx_http_studio_testusers_sid_node_t *) temp;

            p = (ngx_memcmp(n->sid, t->sid, STU_FLOW_SID_LEN) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_http_studio_testusers_sid_node_t *
ngx_http_studio_testusers_lookup(ngx_rbtree_t *tree, ngx_str_t *sid,
    ngx_rbtree_key_t key)
{
    ngx_int_t                              rc;
    ngx_rbtree_node_t                     *node, *sentinel;
    ngx_http_studio_testusers_sid_node_t  *n;

    node = tree->root;
    sentinel = tree->sentinel;

    while (node != sentinel) {

        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        n = (ngx_http_studio_testusers_sid_node_t *) node;

        rc = ngx_memcmp(sid->data, n->sid, STU_FLOW_SID_LEN);

        if (rc == 0) {
            return n;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


ngx_int_t
ngx_http_studio_testusers_baseline_get(ngx_shm_zone_t *zone, ngx_str_t *sid,
    u_char *key_id, ngx_pool_t *pool, u_char **digests, ngx_uint_t *n)
{
    size_t                                 size;
    ngx_int_t                              rc;
    ngx_http_studio_testusers_flow_t      *f;
    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    zctx = zone->data;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&zctx->shpool->mutex);

    f = (ngx_http_studio_testusers_flow_t *)
            ngx_http_studio_testusers_lookup(&zctx->sh->rbtree, sid,
                                     ngx_http_studio_testusers_sid_key(sid));

    if (f && ngx_memcmp(f->key_id, key_id, sizeof(f->key_id)) == 0) {
        size = f->n * NGX_HTTP_STU_TOKEN_LEN;
        *digests = ngx_pnalloc(pool, size ? size : 1);

        if (*digests) {
            ngx_memcpy(*digests, f->digests, size);
            *n = f->n;
            rc = NGX_OK;

            ngx_queue_remove(&f->queue);
            ngx_queue_insert_head(&zctx->sh->lru, &f->queue);

        } else {
            rc = NGX_ERROR;
        }
    }

    ngx_shmtx_unlock(&zctx->shpool->mutex);

    return rc;
}


static void
ngx_http_studio_testusers_flow_free(ngx_http_studio_testusers_zone_ctx_t *zctx,
    ngx_http_studio_testusers_flow_t *f)
{
    ngx_queue_remove(&f->queue);
    ngx_rbtree_delete(&zctx->sh->rbtree, &f->sn.node);
    ngx_slab_free_locked(zctx->shpool, f);
}


void
ngx_http_studio_testusers_baseline_set(ngx_shm_zone_t *zone, ngx_str_t *sid,
    u_char *key_id, u_char *digests, ngx_uint_t n, ngx_log_t *log)
{
    size_t                                 size;
    ngx_uint_t                             i;
    ngx_rbtree_key_t                       key;
    ngx_queue_t                           *q;
    ngx_http_studio_testusers_flow_t      *f;
    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    zctx = zone->data;
    key = ngx_http_studio_testusers_sid_key(sid);
    size = offsetof(ngx_http_studio_testusers_flow_t, digests)
           + n * NGX_HTTP_STU_TOKEN_LEN;

    ngx_shmtx_lock(&zctx->shpool->mutex);

    f = (ngx_http_studio_testusers_flow_t *)
            ngx_http_studio_testusers_lookup(&zctx->sh->rbtree, sid, key);

    if (f) {
        ngx_http_studio_testusers_flow_free(zctx, f);
    }

    /* make room by forgetting the least recently used flows */

    for (i = 0; /* void */; i++) {
        f = ngx_slab_alloc_locked(zctx->shpool, size);

        if (f || i == 64 || ngx_queue_empty(&zctx->sh->lru)) {
            break;
        }

        q = ngx_queue_last(&zctx->sh->lru);
        ngx_http_studio_testusers_flow_free(zctx,
                   ngx_queue_data(q, ngx_http_studio_testusers_flow_t, queue));
    }

    if (f == NULL) {
        ngx_shmtx_unlock(&zctx->shpool->mutex);
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "studio_testusers: zone \"%V\" has no room for a list "
                      "of %ui identities, baseline dropped",
                      &zone->shm.name, n);
        return;
    }

    f->sn.node.key = key;
    ngx_memcpy(f->sn.sid, sid->data, STU_FLOW_SID_LEN);
    ngx_memcpy(f->key_id, key_id, sizeof(f->key_id));
    f->n = n;
    ngx_memcpy(f->digests, digests, n * NGX_HTTP_STU_TOKEN_LEN);

    ngx_rbtree_insert(&zctx->sh->rbtree, &f->sn.node);
    ngx_queue_insert_head(&zctx->sh->lru, &f->queue);

    ngx_shmtx_unlock(&zctx->shpool->mutex);
}


void
ngx_http_studio_testusers_baseline_forget(ngx_shm_zone_t *zone, ngx_str_t *sid)
{
    ngx_http_studio_testusers_flow_t      *f;
    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    zctx = zone->data;

    ngx_shmtx_lock(&zctx->shpool->mutex);

    f = (ngx_http_studio_testusers_flow_t *)
            ngx_http_studio_testusers_lookup(&zctx->sh->rbtree, sid,
                                     ngx_http_studio_testusers_sid_key(sid));
    if (f) {
        ngx_http_studio_testusers_flow_free(zctx, f);
    }

    ngx_shmtx_unlock(&zctx->shpool->mutex);
}


u_char *
ngx_http_studio_testusers_zone_salt(ngx_shm_zone_t *zone)
{
    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    zctx = zone->data;

    return zctx->sh->salt;
}


void
ngx_http_studio_testusers_count_audit(ngx_shm_zone_t *zone, ngx_uint_t ok)
{
    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    zctx = zone->data;

    (void) ngx_atomic_fetch_add(ok ? &zctx->sh->metrics.audit_written
                                   : &zctx->sh->metrics.audit_failed, 1);
}


void
ngx_http_studio_testusers_count_policy(ngx_shm_zone_t *zone,
    ngx_uint_t conflict)
{
    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    zctx = zone->data;

    (void) ngx_atomic_fetch_add(conflict ? &zctx->sh->metrics.conflicts
                                         : &zctx->sh->metrics.would_reject, 1);
}


ngx_http_studio_testusers_metrics_t *
ngx_http_studio_testusers_zone_metrics(ngx_shm_zone_t *zone)
{
    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    zctx = zone->data;

    return &zctx->sh->metrics;
}


/*
 * The pool cleanup of a lock, and called directly as soon as the response
 * is complete: a request can outlive its response (lingering close, slow
 * clients), and the next POST should not wait.
 */

void
ngx_http_studio_testusers_unlock(void *data)
{
    ngx_http_studio_testusers_unlock_t *u = data;

    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    if (u->lock == NULL) {
        return;
    }

    zctx = u->zone->data;

    ngx_shmtx_lock(&zctx->shpool->mutex);

    /* it may have been taken over after this worker was thought dead */

    if (u->lock->pid == u->pid && u->lock->number == u->number) {
        ngx_rbtree_delete(&zctx->sh->locks, &u->lock->sn.node);
        ngx_slab_free_locked(zctx->shpool, u->lock);
    }

    ngx_shmtx_unlock(&zctx->shpool->mutex);

    u->lock = NULL;
}


/*
 * Takes the flow's update lock for the request's lifetime (released by a
 * pool cleanup: success, error, abort or timeout alike).  A lock held by
 * a process that no longer exists (a crashed worker) is taken over.
 * NGX_BUSY: another POST for the flow is in flight; NGX_DECLINED: the
 * zone is full of locks.
 */

ngx_int_t
ngx_http_studio_testusers_lock(ngx_shm_zone_t *zone, ngx_http_request_t *r,
    ngx_str_t *sid, void **handle)
{
    ngx_queue_t                           *q;
    ngx_rbtree_key_t                       key;
    ngx_pool_cleanup_t                    *cln;
    ngx_http_studio_testusers_lock_t      *lock;
    ngx_http_studio_testusers_unlock_t    *u;
    ngx_http_studio_testusers_zone_ctx_t  *zctx;

    zctx = zone->data;
    key = ngx_http_studio_testusers_sid_key(sid);

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_studio_testusers_unlock_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&zctx->shpool->mutex);

    lock = (ngx_http_studio_testusers_lock_t *)
               ngx_http_studio_testusers_lookup(&zctx->sh->locks, sid, key);

    if (lock
        && lock->pid == ngx_pid && lock->owner == r->main
        && lock->number == r->connection->number)
    {
        /* the same request, judged again after an error_page redirect */
        ngx_shmtx_unlock(&zctx->shpool->mutex);
        *handle = NULL;
        return NGX_OK;
    }

    if (lock) {
        if (lock->pid == ngx_pid
            || kill(lock->pid, 0) == 0 || ngx_errno != NGX_ESRCH)
        {
            ngx_shmtx_unlock(&zctx->shpool->mutex);
            ngx_http_studio_testusers_count_policy(zone, 1);
            return NGX_BUSY;
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "studio_testusers: taking over the update lock of "
                      "flow \"%V\" from exited process %P", sid, lock->pid);

    } else {
        /* a lock matters more than a remembered list: evict for it */

        for ( ;; ) {
            lock = ngx_slab_alloc_locked(zctx->shpool,
                                     sizeof(ngx_http_studio_testusers_lock_t));

            if (lock || ngx_queue_empty(&zctx->sh->lru)) {
                break;
            }

            q = ngx_queue_last(&zctx->sh->lru);
            ngx_http_studio_testusers_flow_free(zctx,
                   ngx_queue_data(q, ngx_http_studio_testusers_flow_t, queue));
        }

        if (lock == NULL) {
            ngx_shmtx_unlock(&zctx->shpool->mutex);
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "studio_testusers: zone \"%V\" has no room for "
                          "an update lock", &zone->shm.name);
            return NGX_DECLINED;
        }

        lock->sn.node.key = key;
        ngx_memcpy(lock->sn.sid, sid->data, STU_FLOW_SID_LEN);
        ngx_rbtree_insert(&zctx->sh->locks, &lock->sn.node);
    }

    lock->pid = ngx_pid;
    lock->number = r->connection->number;
    lock->owner = r->main;

    ngx_shmtx_unlock(&zctx->shpool->mutex);

    u = cln->data;
    u->zone = zone;
    u->lock = lock;
    u->pid = ngx_pid;
    u->number = r->connection->number;

    cln->handler = ngx_http_studio_testusers_unlock;
    *handle = u;

    return NGX_OK;
}
