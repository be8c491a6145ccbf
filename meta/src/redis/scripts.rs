//! The Lua scripts of the Redis engine.
//!
//! Every mutation is one script, so it runs atomically on the server: the
//! entry change, its change-log record, blob reference counts and deletion
//! queue records commit together, and a conditional put is a compare-and-swap.
//! Redis does not roll a script back when it fails half-way, so each script
//! checks and decodes everything first and writes only after that.
//!
//! Scripts return a table whose first element is a status: `ok`, or one of
//! `nobucket`, `exists`, `notempty`, `nokey`, `precondition`, `noupload`,
//! `changed`
//! (see [`super::status_error`]). Times come from the caller (`now` is the
//! gateway's `now_millis()`), so queue times compare with the collector's.
//! Every key a script touches is passed in `KEYS`.
//!
//! The `APPLY_*` scripts replay a source region's change in a mirror: each
//! checks and moves the applied position and queues replication jobs in the
//! same script as the change itself (see [`super::RedisMeta::apply`]).

use redis::Script;

/// Helpers shared by the scripts; prepended to each.
const PRELUDE: &str = r#"
-- Calls fn on each blob of a list written as `<len>:<bytes>` repeated.
local function each_blob(list, fn)
  local pos, n = 1, #list
  while pos <= n do
    local colon = string.find(list, ':', pos, true)
    local len = tonumber(string.sub(list, pos, colon - 1))
    fn(string.sub(list, colon + 1, colon + len))
    pos = colon + len + 1
  end
end

-- A blob gains a reference; if it was queued for deletion it leaves the queue.
local function add_ref(refs, queue, blob)
  redis.call('HINCRBY', refs, blob, 1)
  redis.call('ZREM', queue, blob)
end

-- A blob loses a reference; at zero it is queued (an older record is kept).
local function drop_ref(refs, queue, blob, now)
  local left = redis.call('HINCRBY', refs, blob, -1)
  if left <= 0 then
    redis.call('HDEL', refs, blob)
    redis.call('ZADD', queue, 'NX', now, blob)
  end
end

local function drop_all(refs, queue, list, now)
  if list then
    each_blob(list, function(blob) drop_ref(refs, queue, blob, now) end)
  end
end

-- Appends a change-log record; `op` is the JSON of the operation.
local function append_change(seq_key, log_key, now, op)
  local seq = redis.call('INCR', seq_key)
  redis.call('ZADD', log_key, seq, '{"seq":' .. seq .. ',"at":' .. now .. ',"op":' .. op .. '}')
  return seq
end

-- Removes a layout by entry id, dropping its blobs' references.
local function remove_layout(layouts, lblobs, refs, queue, id, now)
  local blobs = redis.call('HGET', lblobs, id)
  redis.call('HDEL', layouts, id)
  redis.call('HDEL', lblobs, id)
  drop_all(refs, queue, blobs, now)
end

-- Removes an upload and its parts, dropping each part's references.
local function remove_upload(uploads, records, parts, part_records, part_blobs, refs, queue, stale,
                             member, upload_id, stale_member, now)
  local low, high = '[' .. upload_id .. '\0', '(' .. upload_id .. '\1'
  for _, part in ipairs(redis.call('ZRANGEBYLEX', parts, low, high)) do
    drop_all(refs, queue, redis.call('HGET', part_blobs, part), now)
    redis.call('HDEL', part_records, part)
    redis.call('HDEL', part_blobs, part)
  end
  redis.call('ZREMRANGEBYLEX', parts, low, high)
  redis.call('HDEL', records, member)
  redis.call('ZREM', uploads, member)
  redis.call('ZREM', stale, stale_member)
end

-- Put: checks the bucket and the condition. Returns an error status, or
-- nil with the current entry (or false) and its id.
local function check_commit(buckets, entries, bucket, key, cond, etag)
  if redis.call('HEXISTS', buckets, bucket) == 0 then return 'nobucket' end
  local cur = redis.call('HGET', entries, key)
  local cur_id = false
  if cur then cur_id = cjson.decode(cur).id end
  -- As `Precondition::check`.
  if cond == 'absent' then
    if cur then return 'precondition' end
  elseif cond == 'exists' then
    if not cur then return 'nokey' end
  elseif cond == 'match' then
    if not cur then return 'nokey' end
    if cjson.decode(cur).etag ~= etag then return 'precondition' end
  elseif cond == 'nonematch' then
    if cur and cjson.decode(cur).etag == etag then return 'precondition' end
  end
  return nil, cur, cur_id
end

-- Put: writes the entry and its layout, replaces the old one, logs it.
-- The new references are added before the old ones are dropped, so a blob
-- both share never passes through the queue.
local function write_commit(k, a, cur_id)
  -- k: buckets keys entries layouts lblobs refs queue seq log
  -- a: bucket key cond etag entry id layout blobs now bucket_json key_json
  each_blob(a[8], function(blob) add_ref(k[6], k[7], blob) end)
  if cur_id then remove_layout(k[4], k[5], k[6], k[7], cur_id, a[9]) end
  redis.call('HSET', k[3], a[2], a[5])
  redis.call('ZADD', k[2], 0, a[2])
  redis.call('HSET', k[4], a[6], a[7])
  redis.call('HSET', k[5], a[6], a[8])
  local op = '{"op":"put","bucket":' .. a[10] .. ',"key":' .. a[11] ..
             ',"entry":' .. a[5] .. ',"layout":' .. a[7] .. '}'
  return append_change(k[8], k[9], a[9], op)
end

-- Removes an entry and its layout. Returns the entry, or false if absent.
local function remove_entry(keys, entries, layouts, lblobs, refs, queue, key, now)
  local cur = redis.call('HGET', entries, key)
  if not cur then return false end
  local id = cjson.decode(cur).id
  redis.call('HDEL', entries, key)
  redis.call('ZREM', keys, key)
  remove_layout(layouts, lblobs, refs, queue, id, now)
  return cur
end

-- Bucket removal scripts share one KEYS order:
-- buckets keys entries uploads upload_records parts part_records part_blobs
-- refs queue stale seq log layouts lblobs.

-- Removes a bucket's entries up to rank `stop` (-1: all) with their
-- layouts. Every entry is decoded before the first write, so a corrupt one
-- fails the script before it changes anything.
local function remove_entries(k, stop, now)
  local found = {}
  for _, key in ipairs(redis.call('ZRANGE', k[2], 0, stop)) do
    local cur = redis.call('HGET', k[3], key)
    local id = false
    if cur then id = cjson.decode(cur).id end
    found[#found + 1] = {key, id}
  end
  for _, item in ipairs(found) do
    redis.call('HDEL', k[3], item[1])
    redis.call('ZREM', k[2], item[1])
    if item[2] then remove_layout(k[14], k[15], k[9], k[10], item[2], now) end
  end
end

-- Removes a bucket whose entries are gone. Uploads in progress are
-- aborted: every part's blob loses its reference.
local function remove_bucket(k, bucket, now)
  for _, part in ipairs(redis.call('ZRANGE', k[6], 0, -1)) do
    drop_all(k[9], k[10], redis.call('HGET', k[8], part), now)
  end
  for _, member in ipairs(redis.call('ZRANGE', k[4], 0, -1)) do
    redis.call('ZREM', k[11], bucket .. '\0' .. member)
  end
  redis.call('DEL', k[2], k[3], k[4], k[5], k[6], k[7], k[8])
  redis.call('HDEL', k[1], bucket)
end

-- Queues a replication job for each blob of a list that has none yet (a
-- queued blob keeps its job). Ids come from a counter, so they only grow
-- and are never reused; they stay far below 2^53, exact as zset scores.
local function queue_jobs(jobs, next_job, list)
  each_blob(list, function(blob)
    if not redis.call('ZSCORE', jobs, blob) then
      redis.call('ZADD', jobs, redis.call('INCR', next_job), blob)
    end
  end)
end

-- A replica script's KEYS end with `position jobs next_job` and its ARGV
-- with `seq blobs` (the change's sequence number and the blobs to
-- replicate, a blob list).

-- Whether the change is past the applied position (none yet: it is).
local function replica_fresh()
  local at = redis.call('GET', KEYS[#KEYS - 2])
  return (not at) or tonumber(ARGV[#ARGV - 1]) > tonumber(at)
end

-- Records the change as applied and queues its replication jobs.
local function replica_done()
  redis.call('SET', KEYS[#KEYS - 2], ARGV[#ARGV - 1])
  queue_jobs(KEYS[#KEYS - 1], KEYS[#KEYS], ARGV[#ARGV])
end

-- The index of the closing quote of the JSON string opening at `pos`.
local function json_string_end(json, pos)
  local at = pos + 1
  while true do
    local stop = string.find(json, '["\\]', at)
    if not stop then error('ferry: unterminated JSON string') end
    if string.sub(json, stop, stop) == '"' then return stop end
    at = stop + 2
  end
end

-- The index of the last byte of the JSON value starting at `pos`.
local function json_value_end(json, pos)
  local depth, at, n = 0, pos, #json
  while at <= n do
    local c = string.sub(json, at, at)
    if c == '"' then
      at = json_string_end(json, at)
      if depth == 0 then return at end
    elseif c == '{' or c == '[' then
      depth = depth + 1
    elseif c == '}' or c == ']' then
      if depth == 0 then return at - 1 end
      depth = depth - 1
      if depth == 0 then return at end
    elseif c == ',' and depth == 0 then
      return at - 1
    end
    at = at + 1
  end
  error('ferry: truncated JSON value')
end

-- `json`, a compact JSON object as serde_json writes it, with top-level
-- field `name` set to the JSON `value`, or removed when `value` is empty
-- (serde skips a default ACL). The field stays where it was; a new one goes
-- before field `before` when that is present, else last: its place in the
-- struct's declaration order, so the bytes are what serde_json would write.
-- cjson is no help here: re-encoding would reorder fields and rewrite
-- numbers and escapes.
local function with_field(json, name, value, before)
  if string.sub(json, 1, 1) ~= '{' then error('ferry: not a JSON object') end
  local wanted = '"' .. name .. '"'
  local following = before and ('"' .. before .. '"')
  local new = nil
  if value ~= '' then new = wanted .. ':' .. value end
  local fields, placed, at = {}, false, 2
  while string.sub(json, at, at) == '"' do
    local key_end = json_string_end(json, at)
    if string.sub(json, key_end + 1, key_end + 1) ~= ':' then
      error('ferry: malformed JSON object')
    end
    local key = string.sub(json, at, key_end)
    local stop = json_value_end(json, key_end + 2)
    if key == wanted or (key == following and not placed) then
      if new and not placed then fields[#fields + 1] = new end
      placed = true
    end
    if key ~= wanted then fields[#fields + 1] = string.sub(json, at, stop) end
    local sep = string.sub(json, stop + 1, stop + 1)
    at = stop + 2
    if sep == '}' then break end
    if sep ~= ',' then error('ferry: malformed JSON object') end
  end
  if new and not placed then fields[#fields + 1] = new end
  return '{' .. table.concat(fields, ',') .. '}'
end
"#;

/// KEYS: buckets seq log. ARGV: bucket info_json now op_json.
const CREATE_BUCKET: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {'exists'} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {'ok', append_change(KEYS[2], KEYS[3], ARGV[3], ARGV[4])}
"#;

/// KEYS: buckets keys entries uploads upload_records parts part_records
/// part_blobs refs queue stale seq log. ARGV: bucket now op_json.
const DELETE_BUCKET: &str = r#"
local bucket, now = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[1], bucket) == 0 then return {'nobucket'} end
if redis.call('ZCARD', KEYS[2]) > 0 then return {'notempty'} end
remove_bucket(KEYS, bucket, now)
return {'ok', append_change(KEYS[12], KEYS[13], now, ARGV[3])}
"#;

/// KEYS: buckets entries layouts. ARGV: bucket key.
const GET: &str = r#"
local entry = redis.call('HGET', KEYS[2], ARGV[2])
if not entry then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'nobucket'} end
  return {'nokey'}
end
local layout = redis.call('HGET', KEYS[3], cjson.decode(entry).id)
return {'ok', entry, layout or false}
"#;

/// KEYS: buckets keys entries layouts lblobs refs queue seq log.
/// ARGV: bucket key cond etag entry_json id layout_json blobs now
/// bucket_json key_json.
const PUT: &str = r#"
local err, cur, cur_id = check_commit(KEYS[1], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if err then return {err} end
local seq = write_commit(KEYS, ARGV, cur_id)
return {'ok', seq, cur or false}
"#;

/// KEYS: buckets keys entries layouts lblobs refs queue seq log uploads
/// upload_records parts part_records part_blobs stale completion.
/// ARGV: as PUT, then upload_member upload_id stale_member completion_json
/// keep_until. The completion record expires by itself (`PXAT`).
const COMPLETE_UPLOAD: &str = r#"
if redis.call('HEXISTS', KEYS[11], ARGV[12]) == 0 then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'nobucket'} end
  return {'noupload'}
end
local err, cur, cur_id = check_commit(KEYS[1], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if err then return {err} end
-- The entry's references are added before the parts' are dropped, so the
-- parts it uses never pass through the queue.
local seq = write_commit(KEYS, ARGV, cur_id)
remove_upload(KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[6], KEYS[7], KEYS[15],
              ARGV[12], ARGV[13], ARGV[14], ARGV[9])
redis.call('SET', KEYS[16], ARGV[15], 'PXAT', ARGV[16])
return {'ok', seq, cur or false}
"#;

/// Replaces one hash field's value if it is still `old`, and logs the
/// change: a compare-and-swap for edits the caller computes (an ACL).
/// KEYS: hash seq log. ARGV: field old new now op_json.
/// Returns ok seq, or `changed` when the field holds something else.
const SWAP_FIELD: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return {'changed'} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {'ok', append_change(KEYS[2], KEYS[3], ARGV[4], ARGV[5])}
"#;

/// KEYS: buckets keys entries layouts lblobs refs queue seq log.
/// ARGV: bucket key now op_json.
const DELETE: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'nobucket'} end
local cur = remove_entry(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], ARGV[2], ARGV[3])
if not cur then return {'ok', false} end
append_change(KEYS[8], KEYS[9], ARGV[3], ARGV[4])
return {'ok', cur}
"#;

/// One page of a listing, merged keys and common prefixes in byte order.
/// A common prefix's group is skipped with one seek to `group 0xFF`.
/// KEYS: buckets keys entries. ARGV: bucket prefix delimiter from upper max.
/// Returns: ok truncated last keys entries prefixes.
const LIST: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'nobucket'} end
local prefix, delim, from, upper = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local max = tonumber(ARGV[6])
local plen, dlen = #prefix, #delim
local keys, entries, groups = {}, {}, {}
local count, truncated, last = 0, 0, ''
local function group_of(key)
  if dlen == 0 then return nil end
  local at = string.find(key, delim, plen + 1, true)
  if not at then return nil end
  return string.sub(key, 1, at + dlen - 1)
end
while true do
  -- One more than fits, so a full page knows whether more follow.
  local want = max - count + 1
  if want > 1000 then want = 1000 end
  local batch = redis.call('ZRANGEBYLEX', KEYS[2], '[' .. from, upper, 'LIMIT', 0, want)
  local sought, stop = false, false
  for _, key in ipairs(batch) do
    if string.sub(key, 1, plen) ~= prefix then stop = true; break end
    if count == max then truncated = 1; stop = true; break end
    count = count + 1
    local group = group_of(key)
    if group then
      groups[#groups + 1] = group
      last = group
      from = group .. '\255'
      sought = true
      break
    end
    local entry = redis.call('HGET', KEYS[3], key)
    if not entry then return redis.error_reply('ferry: key ' .. key .. ' has no entry') end
    keys[#keys + 1] = key
    entries[#entries + 1] = entry
    last = key
    from = key .. '\0'
  end
  if stop then break end
  if (not sought) and #batch < want then break end
end
return {'ok', truncated, last, keys, entries, groups}
"#;

/// Values of a hash for the members of a zset in a lex range.
/// KEYS: zset hash. ARGV: min max limit.
const RANGE: &str = r#"
local out = {}
for _, member in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local value = redis.call('HGET', KEYS[2], member)
  if value then out[#out + 1] = value end
end
return out
"#;

/// KEYS: buckets uploads upload_records stale.
/// ARGV: bucket member upload_json initiated stale_member.
const CREATE_UPLOAD: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'nobucket'} end
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
return {'ok'}
"#;

/// KEYS: buckets upload_records parts part_records part_blobs refs queue.
/// ARGV: bucket upload_member part_member part_json blobs now.
const PUT_PART: &str = r#"
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'nobucket'} end
  return {'noupload'}
end
each_blob(ARGV[5], function(blob) add_ref(KEYS[6], KEYS[7], blob) end)
local old = redis.call('HGET', KEYS[4], ARGV[3])
local old_blobs = redis.call('HGET', KEYS[5], ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[5])
drop_all(KEYS[6], KEYS[7], old_blobs, ARGV[6])
return {'ok', old or false}
"#;

/// KEYS: buckets uploads upload_records parts part_records part_blobs refs
/// queue stale. ARGV: bucket upload_member upload_id stale_member now.
const ABORT_UPLOAD: &str = r#"
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'nobucket'} end
  return {'noupload'}
end
remove_upload(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9],
              ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return {'ok'}
"#;

/// KEYS: refs queue. ARGV: now blob...
const QUEUE_UNCOMMITTED: &str = r#"
for i = 2, #ARGV do
  local refs = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if refs <= 0 then redis.call('ZADD', KEYS[2], 'NX', ARGV[1], ARGV[i]) end
end
return {'ok'}
"#;

/// KEYS: refs queue. ARGV: blob queued_at. Returns 1 when the caller may
/// delete the blob.
const CLAIM_DELETION: &str = r#"
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if (not score) or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
local refs = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if refs > 0 then return 0 end
return 1
"#;

/// KEYS: lease. ARGV: holder ttl_ms. The expiry is Redis's own (`PX`).
const TRY_LEASE: &str = r#"
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// Removes change-log records through `through` and raises the floor to
/// it; a `through` at or below the floor changes nothing, so the floor
/// never goes down. KEYS: log floor. ARGV: through. Returns how many went.
const TRIM_LOG: &str = r#"
local floor = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= floor then return 0 end
local removed = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
return removed
"#;

/// KEYS: buckets seq log, then the replica keys. ARGV: bucket info_json now
/// op_json, then the replica arguments (see `replica_fresh`). Returns ok 1
/// when applied, ok 0 when at or below the position. An existing bucket is
/// kept as it is.
const APPLY_CREATE_BUCKET: &str = r#"
if not replica_fresh() then return {'ok', 0} end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  append_change(KEYS[2], KEYS[3], ARGV[3], ARGV[4])
end
replica_done()
return {'ok', 1}
"#;

/// KEYS: the bucket removal keys (see `remove_entries`), then the replica
/// keys. ARGV: bucket now op_json, then the replica arguments. Whatever the
/// bucket still holds goes with it.
const APPLY_DELETE_BUCKET: &str = r#"
if not replica_fresh() then return {'ok', 0} end
local bucket, now = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[1], bucket) == 1 then
  remove_entries(KEYS, -1, now)
  remove_bucket(KEYS, bucket, now)
  append_change(KEYS[12], KEYS[13], now, ARGV[3])
end
replica_done()
return {'ok', 1}
"#;

/// KEYS: as PUT, then the replica keys. ARGV: as PUT (the condition is
/// ignored: a replayed put is unconditional), then the replica arguments.
const APPLY_PUT: &str = r#"
if not replica_fresh() then return {'ok', 0} end
local err, _, cur_id = check_commit(KEYS[1], KEYS[3], ARGV[1], ARGV[2], 'none', '')
-- With no condition the only refusal is an absent bucket: a no-op here.
if not err then write_commit(KEYS, ARGV, cur_id) end
replica_done()
return {'ok', 1}
"#;

/// KEYS: as DELETE, then the replica keys. ARGV: as DELETE, then the
/// replica arguments.
const APPLY_DELETE: &str = r#"
if not replica_fresh() then return {'ok', 0} end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 and
   remove_entry(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], ARGV[2], ARGV[3]) then
  append_change(KEYS[8], KEYS[9], ARGV[3], ARGV[4])
end
replica_done()
return {'ok', 1}
"#;

/// Sets the `acl` of one record of a hash (a bucket's info or an entry) if
/// present. KEYS: hash seq log, then the replica keys. ARGV: field acl_json
/// (empty for private, which serde skips) before now op_json, then the
/// replica arguments; `before` names the field that follows `acl` in the
/// record's struct (empty when `acl` is last).
const APPLY_ACL: &str = r#"
if not replica_fresh() then return {'ok', 0} end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local before = ARGV[3]
  if before == '' then before = nil end
  redis.call('HSET', KEYS[1], ARGV[1], with_field(cur, 'acl', ARGV[2], before))
  append_change(KEYS[2], KEYS[3], ARGV[4], ARGV[5])
end
replica_done()
return {'ok', 1}
"#;

/// One step of a replica reset: removes up to `limit` entries of a bucket,
/// then, once none are left, the bucket itself (logged as its deletion).
/// KEYS: the bucket removal keys (see `remove_entries`). ARGV: bucket now
/// op_json limit. Returns ok 1 while entries are left, ok 0 when the bucket
/// is gone.
const RESET_BUCKET: &str = r#"
local bucket, now = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[1], bucket) == 0 then return {'ok', 0} end
remove_entries(KEYS, tonumber(ARGV[4]) - 1, now)
if redis.call('EXISTS', KEYS[2]) == 1 then return {'ok', 1} end
remove_bucket(KEYS, bucket, now)
append_change(KEYS[12], KEYS[13], now, ARGV[3])
return {'ok', 0}
"#;

/// The last step of a replica reset: queues up to `limit` blobs that still
/// have a reference count (no entry names them any more) and forgets the
/// counts; once none are left, drops whatever layouts and stale-upload
/// records no bucket claimed. A reloaded entry takes its blobs out of the
/// queue again (`add_ref`). KEYS: refs queue layouts lblobs stale. ARGV: now
/// limit. Returns ok 1 while counts are left, ok 0 when done.
const RESET_REFS: &str = r#"
for _, blob in ipairs(redis.call('HRANDFIELD', KEYS[1], tonumber(ARGV[2]))) do
  redis.call('ZADD', KEYS[2], 'NX', ARGV[1], blob)
  redis.call('HDEL', KEYS[1], blob)
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'ok', 1} end
-- Normally empty already; UNLINK frees a large leftover off the main thread.
redis.call('UNLINK', KEYS[3], KEYS[4], KEYS[5])
return {'ok', 0}
"#;

/// KEYS: jobs next_job. ARGV: blobs (a blob list).
const QUEUE_JOBS: &str = r#"
queue_jobs(KEYS[1], KEYS[2], ARGV[1])
return {'ok'}
"#;

/// Drops a replication job if the blob's job is still this one (a blob
/// finished and queued again has a newer job that must stay).
/// KEYS: jobs. ARGV: blob id.
const FINISH_JOB: &str = r#"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return {'ok'}
"#;

pub(super) struct Scripts {
    pub create_bucket: Script,
    pub delete_bucket: Script,
    pub get: Script,
    pub put: Script,
    pub complete_upload: Script,
    pub swap_field: Script,
    pub delete: Script,
    pub list: Script,
    pub range: Script,
    pub create_upload: Script,
    pub put_part: Script,
    pub abort_upload: Script,
    pub queue_uncommitted: Script,
    pub claim_deletion: Script,
    pub try_lease: Script,
    pub trim_log: Script,
    pub apply_create_bucket: Script,
    pub apply_delete_bucket: Script,
    pub apply_put: Script,
    pub apply_delete: Script,
    pub apply_acl: Script,
    pub reset_bucket: Script,
    pub reset_refs: Script,
    pub queue_jobs: Script,
    pub finish_job: Script,
}

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            create_bucket: with_prelude(CREATE_BUCKET),
            delete_bucket: with_prelude(DELETE_BUCKET),
            get: Script::new(GET),
            put: with_prelude(PUT),
            complete_upload: with_prelude(COMPLETE_UPLOAD),
            swap_field: with_prelude(SWAP_FIELD),
            delete: with_prelude(DELETE),
            list: Script::new(LIST),
            range: Script::new(RANGE),
            create_upload: Script::new(CREATE_UPLOAD),
            put_part: with_prelude(PUT_PART),
            abort_upload: with_prelude(ABORT_UPLOAD),
            queue_uncommitted: Script::new(QUEUE_UNCOMMITTED),
            claim_deletion: Script::new(CLAIM_DELETION),
            try_lease: Script::new(TRY_LEASE),
            trim_log: Script::new(TRIM_LOG),
            apply_create_bucket: with_prelude(APPLY_CREATE_BUCKET),
            apply_delete_bucket: with_prelude(APPLY_DELETE_BUCKET),
            apply_put: with_prelude(APPLY_PUT),
            apply_delete: with_prelude(APPLY_DELETE),
            apply_acl: with_prelude(APPLY_ACL),
            reset_bucket: with_prelude(RESET_BUCKET),
            reset_refs: Script::new(RESET_REFS),
            queue_jobs: with_prelude(QUEUE_JOBS),
            finish_job: Script::new(FINISH_JOB),
        }
    }
}
