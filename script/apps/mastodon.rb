# Mastodon's media storage, replayed with the Ruby aws-sdk-s3 (Mastodon stores media through Paperclip's S3
# storage, see config/initializers/paperclip.rb): S3_ENDPOINT with virtual-hosted-style buckets (Mastodon's
# default: force_path_style only when S3_OVERRIDE_PATH_STYLE=true), PutObject with acl public-read and
# Mastodon's Cache-Control, Object#upload_file with multipart_threshold 15 MiB (S3_MULTIPART_THRESHOLD) on a
# 20 MiB file, the same file in one request (what S3_FORCE_SINGLE_REQUEST=true is for), presigned GET
# (expiring URLs of private files and exports) fetched with Net::HTTP, anonymous GET of public media,
# put_object_acl private / public-read (what happens to media of suspended accounts), delete_objects in a
# batch (Attachmentable / AttachmentBatch).
#
# Usage (through script/app-flows, which sets the environment): ruby mastodon.rb WORKDIR
require 'aws-sdk-s3'
require 'digest'
require 'net/http'
require 'securerandom'

# Browsers resolve every *.localhost name to loopback (RFC 6761); Ruby asks the system resolver, which
# on most Linux systems knows only `localhost`. Net::HTTP connects to conn_address (the host name unless
# an IP address was set): the SDK's connections and ours go to 127.0.0.1 for *.localhost, with the Host
# header still naming the bucket.
module LocalhostResolution
  private

  def conn_address
    address.to_s.downcase.end_with?('.localhost') ? '127.0.0.1' : super
  end
end
Net::HTTP.prepend(LocalhostResolution)

MIB = 1024 * 1024
WORK = ARGV[0] || Dir.pwd
S3_PORT = ENV.fetch('GRENIER_S3_PORT')
BUCKET = 'mastodon-media'
CACHE_CONTROL = 'public, max-age=315576000, immutable' # Mastodon's s3_headers
$results = []

def log(msg)
  warn msg
end

def step(name)
  t0 = Time.now
  log "---- #{name}"
  yield
  puts format('STEP %s OK (%.1fs)', name, Time.now - t0)
  $results << true
rescue StandardError => e
  log "#{e.class}: #{e.message}\n  #{(e.backtrace || []).first(8).join("\n  ")}"
  puts "STEP #{name} FAIL: #{e.class}: #{e.message.lines.first.to_s.strip[0, 200]}"
  $results << false
ensure
  $stdout.flush
end

def check_eq(actual, expected, what)
  raise "#{what}: expected #{expected.inspect}, got #{actual.inspect}" unless actual == expected

  log "ok: #{what}"
end

# config/initializers/paperclip.rb: s3_options
S3_OPTIONS = {
  endpoint: "http://s3.localhost:#{S3_PORT}", # S3_ENDPOINT
  region: ENV.fetch('AWS_REGION'),
  signature_version: 'v4',
  force_path_style: ENV['S3_OVERRIDE_PATH_STYLE'] == 'true',
  http_open_timeout: 5,
  http_read_timeout: 5,
  http_idle_timeout: 5,
  retry_limit: 0,
  credentials: Aws::Credentials.new(ENV.fetch('AWS_ACCESS_KEY_ID'), ENV.fetch('AWS_SECRET_ACCESS_KEY'))
}.freeze
client = Aws::S3::Client.new(**S3_OPTIONS)
bucket = Aws::S3::Resource.new(client: client).bucket(BUCKET)

def public_url(key)
  URI("http://#{BUCKET}.s3.localhost:#{S3_PORT}/#{key}")
end

def anonymous_get(uri, headers = {})
  Net::HTTP.start(uri.host, uri.port, open_timeout: 5, read_timeout: 10) do |http|
    req = Net::HTTP::Get.new(uri)
    headers.each { |k, v| req[k] = v }
    http.request(req)
  end
end

avatar_key = 'accounts/avatars/109/348/123/original/5f2a.png'
video_key = 'media_attachments/files/109/348/124/original/8c1d.mp4'
single_key = 'media_attachments/files/109/348/125/original/9e0b.mp4'
avatar = SecureRandom.random_bytes(40 * 1024)
video_path = File.join(WORK, 'video.mp4')
File.binwrite(video_path, SecureRandom.random_bytes(20 * MIB + 4321))
video = File.binread(video_path)

step('create the bucket (virtual-hosted style)') do
  client.create_bucket(bucket: BUCKET)
end

step('PutObject with acl public-read and Cache-Control, anonymous GET') do
  client.put_object(bucket: BUCKET, key: avatar_key, body: avatar, acl: 'public-read',
                    content_type: 'image/png', cache_control: CACHE_CONTROL)
  r = anonymous_get(public_url(avatar_key))
  check_eq(r.code, '200', 'anonymous GET of the public avatar')
  check_eq(r.body.b, avatar, 'avatar bytes')
  check_eq(r['Cache-Control'], CACHE_CONTROL, 'Cache-Control served')
  check_eq(r['Content-Type'], 'image/png', 'Content-Type served')
end

step('Object#upload_file of 20 MiB, multipart_threshold 15 MiB (multipart)') do
  ok = bucket.object(video_key).upload_file(video_path, acl: 'public-read', content_type: 'video/mp4',
                                                        cache_control: CACHE_CONTROL, multipart_threshold: 15 * MIB)
  check_eq(ok, true, 'upload_file result')
  h = client.head_object(bucket: BUCKET, key: video_key)
  check_eq(h.content_length, video.bytesize, 'size')
  check_eq(h.etag.match?(/\A"\h{32}-\d+"\z/), true, "a multipart ETag (#{h.etag})")
  check_eq(h.cache_control, CACHE_CONTROL, 'Cache-Control kept by the multipart upload')
  check_eq(h.content_type, 'video/mp4', 'Content-Type kept by the multipart upload')
  r = anonymous_get(public_url(video_key), 'Range' => 'bytes=15728630-15728649')
  check_eq(r.code, '206', 'anonymous ranged GET of the public video')
  check_eq(r.body.b, video.byteslice(15_728_630, 20), 'ranged bytes across the part boundary')
end

step('the same file in one request (S3_FORCE_SINGLE_REQUEST)') do
  bucket.object(single_key).upload_file(video_path, acl: 'public-read', content_type: 'video/mp4',
                                                    cache_control: CACHE_CONTROL, multipart_threshold: 100 * MIB)
  h = client.head_object(bucket: BUCKET, key: single_key)
  check_eq(h.etag, "\"#{Digest::MD5.hexdigest(video)}\"", 'single-request ETag is the MD5')
end

step('presigned GET fetched with Net::HTTP') do
  url = bucket.object(video_key).presigned_url(:get, expires_in: 600)
  log "presigned: #{url}"
  uri = URI(url)
  r = Net::HTTP.get_response(uri)
  check_eq(r.code, '200', 'presigned GET status')
  check_eq(Digest::SHA256.hexdigest(r.body), Digest::SHA256.hexdigest(video), 'presigned GET bytes')
end

step('put_object_acl private then public-read, anonymous GET 403 then 200') do
  client.put_object_acl(bucket: BUCKET, key: avatar_key, acl: 'private')
  check_eq(anonymous_get(public_url(avatar_key)).code, '403', 'anonymous GET after acl private')
  client.put_object_acl(bucket: BUCKET, key: avatar_key, acl: 'public-read')
  check_eq(anonymous_get(public_url(avatar_key)).code, '200', 'anonymous GET after acl public-read')
end

step('delete_objects in a batch (AttachmentBatch)') do
  keys = [avatar_key, video_key, single_key]
  r = client.delete_objects(bucket: BUCKET, delete: { objects: keys.map { |k| { key: k } }, quiet: true })
  check_eq(r.errors, [], 'no errors')
  check_eq(r.deleted, [], 'quiet: no Deleted entries')
  check_eq(client.list_objects_v2(bucket: BUCKET).key_count, 0, 'bucket empty')
  check_eq(anonymous_get(public_url(avatar_key)).code.to_i >= 400, true, 'deleted media no longer served')
  client.delete_bucket(bucket: BUCKET)
end

File.delete(video_path)
failed = $results.count(false)
log "#{$results.size} steps, #{failed} failed"
exit(failed.zero? ? 0 : 1)
