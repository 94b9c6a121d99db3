package nodeimage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
)

// Defaults of Options.
const (
	DefaultMaxTransferAttempts = 3
	DefaultImportTimeout       = 30 * time.Minute
	DefaultRetryBackoff        = 30 * time.Second
	DefaultPollInterval        = 10 * time.Second
	// DefaultSavingTimeout bounds how long an image may stay saving (receiving data) while the
	// operator is not sending it, like DefaultImportTimeout bounds imports.
	DefaultSavingTimeout = 30 * time.Minute
	// DefaultTransferProgressTimeout fails a transfer when no byte moved for this long.
	DefaultTransferProgressTimeout = 2 * time.Minute
	// maxRetryBackoff caps the exponential backoff between transfer attempts.
	maxRetryBackoff = 15 * time.Minute
)

// SCS image metadata properties (scs-0102), stamped on images the operator creates.
const (
	PropertyPurpose          = "os_purpose"
	PropertyBuildDate        = "image_build_date"
	PropertySource           = "image_source"
	PropertyReplaceFrequency = "replace_frequency"
	PropertyProvidedUntil    = "provided_until"
	// propertyFailedImport is all Glance says about a failed import.
	propertyFailedImport = "os_glance_failed_import"
)

// Ownership properties, stamped on every image the operator creates, in the create call itself:
// they survive any crash, so an image found by name after a restart that lost the status is still
// known to be this object's (and deleted with it under the default policy). Glance takes any
// string property with a snake_case key that is not os_glance_*; the UID decides, the name is
// for people looking at the image.
const (
	// PropertyOwnerUID carries the UID of the OpenStackNodeImageRelease that created the image.
	PropertyOwnerUID = "clusterstack_x_k8s_io_owner_uid"
	// PropertyOwner carries its namespace/name.
	PropertyOwner = "clusterstack_x_k8s_io_owner"
)

// Options tune the service; zero values take the defaults.
type Options struct {
	// HTTPClient downloads image files for uploads; nil means a client on Egress's transport.
	HTTPClient *http.Client
	// Egress is the outbound policy for image URLs: the download client's (when HTTPClient is
	// nil) and the check of URLs handed to Glance's web-download, which Glance fetches from
	// inside the cloud's network. nil means egress.Default().
	Egress *egress.Policy
	// MaxTransferAttempts bounds imports and uploads per object before it is Stalled.
	MaxTransferAttempts int32
	// ImportTimeout is how long an import may stay importing (or queued without a failure
	// flag) before it counts as failed.
	ImportTimeout time.Duration
	// RetryBackoff is the wait after the first failed attempt; it doubles with each attempt.
	RetryBackoff time.Duration
	// PollInterval is how often a running import is looked at.
	PollInterval time.Duration
	// SavingTimeout is how long an image may stay saving (data arriving from someone, or from a
	// run of ours that crashed) before it counts as failed.
	SavingTimeout time.Duration
	// TransferProgressTimeout fails an upload (the download feeding it, the upload, and Glance's
	// answer after the last byte) when no byte moved for this long. Transfers have no total
	// timeout: a large image over a slow link is not a failure.
	TransferProgressTimeout time.Duration
	// Now replaces time.Now in tests.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		// No overall timeout: an image is gigabytes; the reconcile context bounds it.
		o.HTTPClient = o.Egress.Client(0)
	}
	if o.MaxTransferAttempts <= 0 {
		o.MaxTransferAttempts = DefaultMaxTransferAttempts
	}
	if o.ImportTimeout <= 0 {
		o.ImportTimeout = DefaultImportTimeout
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.SavingTimeout <= 0 {
		o.SavingTimeout = DefaultSavingTimeout
	}
	if o.TransferProgressTimeout <= 0 {
		o.TransferProgressTimeout = DefaultTransferProgressTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Outcome is the state an Ensure left the image in, when no error stopped it.
type Outcome struct {
	// Ready is true when the image is active.
	Ready bool
	// Reason and Message describe the progress for conditions (see the reasons in the API).
	Reason  string
	Message string
	// RequeueAfter says when to look again while the image is not ready.
	RequeueAfter time.Duration
}

// TerminalError means the image cannot become ready without a change by a user: a hash
// mismatch, transfers that failed too often, an unusable image, a call Glance refuses for good
// (policy, quota).
type TerminalError struct {
	// Reason is the condition reason (see the API's reasons).
	Reason  string
	Message string
	// Err is the cloud's error when Glance refused a call, nil otherwise.
	Err error
}

func (e *TerminalError) Error() string { return e.Message }

func (e *TerminalError) Unwrap() error { return e.Err }

// Persist writes the object's status to the API server at once. Ensure calls it right after
// creating an image, so that a crash before the upload adopts the image instead of creating a
// second one.
type Persist func(ctx context.Context) error

// Service ensures node images in one project.
type Service struct {
	images clients.ImageClient
	opts   Options
}

// refusal turns a call Glance refused for good into a *TerminalError, or returns nil for errors
// that are not the image's (transient, conflicts, credentials: the caller passes them on).
func refusal(err error, what string) *TerminalError {
	class := clients.Classify(err)
	switch {
	case class.Kind == clients.KindQuota:
		return &TerminalError{Reason: infrav1.QuotaExceededReason, Err: err, Message: fmt.Sprintf(
			"Glance refused %s (HTTP 413): the image is larger than the project's image quota or the cloud's size limit allows; raise the quota, free space in the project or change the image", what)}
	case class.Kind == clients.KindTerminal && class.StatusCode != 0:
		return &TerminalError{Reason: infrav1.CloudErrorReason, Err: err, Message: fmt.Sprintf("Glance refused %s (HTTP %d)", what, class.StatusCode)}
	}
	return nil
}

// CreatedBy reports whether img carries the ownership property of obj.
func CreatedBy(img *images.Image, obj *infrav1.OpenStackNodeImageRelease) bool {
	uid, _ := img.Properties[PropertyOwnerUID].(string)
	return obj.UID != "" && uid == string(obj.UID)
}

// NewService returns a service working with the Glance client of one project.
func NewService(imageClient clients.ImageClient, opts Options) *Service {
	return &Service{images: imageClient, opts: opts.withDefaults()}
}

// Ensure moves the image of obj one step towards active and records what it saw in obj.Status
// (imageID, imageStatus, createdImage and the transfer bookkeeping). Errors are either
// *TerminalError or cloud errors to be classified with clients.Classify.
func (s *Service) Ensure(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease, persist Persist) (Outcome, error) {
	log := ctrl.LoggerFrom(ctx)
	st := &obj.Status
	// What Glance said last time tells an upload that ended badly (saving, now queued) from an
	// import that has not started yet.
	prevStatus := images.ImageStatus(st.ImageStatus)
	img, err := s.find(ctx, obj)
	if err != nil {
		return Outcome{}, err
	}
	if img == nil {
		// Refused before anything exists in Glance, so a refused URL leaves nothing behind.
		if err := s.checkURL(ctx, obj); err != nil {
			return Outcome{}, err
		}
		if img, err = s.images.CreateImage(ctx, createOpts(obj, s.opts.Now())); err != nil {
			if t := refusal(err, fmt.Sprintf("to create image %q", obj.Spec.Image.CreateOpts.Name)); t != nil {
				return Outcome{}, t
			}
			return Outcome{}, fmt.Errorf("creating image %q: %w", obj.Spec.Image.CreateOpts.Name, err)
		}
		log.Info("Created Glance image", "imageID", img.ID, "imageName", img.Name)
		st.ImageID, st.CreatedImage, st.ImageStatus = img.ID, true, string(img.Status)
		st.TransferStartedAt, st.RetryAt = nil, nil
		if err := persist(ctx); err != nil {
			return Outcome{}, fmt.Errorf("recording image ID %s: %w", img.ID, err)
		}
	} else if st.ImageID != img.ID {
		// The ownership property says whether an earlier run of this object created it, also
		// when a crash lost the status that said so.
		ours := CreatedBy(img, obj)
		log.Info("Adopted existing Glance image", "imageID", img.ID, "imageName", img.Name, "imageStatus", img.Status, "createdByThisObject", ours)
		st.ImageID, st.CreatedImage = img.ID, ours
		st.TransferStartedAt, st.RetryAt = nil, nil
	} else if !st.CreatedImage && CreatedBy(img, obj) {
		st.CreatedImage = true
	}
	st.ImageStatus = string(img.Status)

	switch img.Status {
	case images.ImageStatusActive:
		st.TransferStartedAt, st.RetryAt = nil, nil
		return Outcome{Ready: true, Reason: infrav1.ImageActiveReason, Message: fmt.Sprintf("Image %s is active in Glance", img.ID)}, nil
	case images.ImageStatusQueued:
		return s.queued(ctx, obj, img, prevStatus)
	case images.ImageStatusImporting:
		if s.boundExceeded(st, s.opts.ImportTimeout) {
			return s.replaceStuck(ctx, obj, fmt.Sprintf("the import of image %s did not finish within %s", img.ID, s.opts.ImportTimeout))
		}
		return Outcome{Reason: infrav1.ImportingReason, Message: fmt.Sprintf("Glance is importing image %s from %s", img.ID, obj.Spec.Image.URL), RequeueAfter: s.opts.PollInterval}, nil
	case images.ImageStatusSaving, images.ImageStatusUploading:
		// Someone (or a crashed earlier run of ours, until Glance notices) is sending data; an
		// upload of this operator never reaches here while it runs (the reconcile waits for it).
		if s.boundExceeded(st, s.opts.SavingTimeout) {
			return s.replaceStuck(ctx, obj, fmt.Sprintf("image %s stayed %s for more than %s without becoming active", img.ID, img.Status, s.opts.SavingTimeout))
		}
		return Outcome{Reason: infrav1.UploadingReason, Message: fmt.Sprintf("Glance is receiving data for image %s", img.ID), RequeueAfter: s.opts.PollInterval}, nil
	case images.ImageStatusKilled:
		if st.CreatedImage {
			return s.replaceStuck(ctx, obj, fmt.Sprintf("Glance killed image %s", img.ID))
		}
		return Outcome{}, &TerminalError{Reason: infrav1.ImageUnusableReason, Message: fmt.Sprintf("image %s found by name is killed and was not created by the operator; delete it or set createOpts.id", img.ID)}
	case images.ImageStatusDeactivated:
		return Outcome{}, &TerminalError{Reason: infrav1.ImageUnusableReason, Message: fmt.Sprintf("image %s is deactivated in Glance; reactivate it", img.ID)}
	default:
		// deleted, pending_delete: forget it; the next reconcile creates a new one.
		st.ImageID, st.CreatedImage = "", false
		return Outcome{Reason: infrav1.CreatingImageReason, Message: fmt.Sprintf("Image %s is being deleted in Glance; creating a new one", img.ID), RequeueAfter: s.opts.PollInterval}, nil
	}
}

// boundExceeded reports whether the transfer recorded in st has run for longer than bound. A
// transfer whose start is unknown (started by someone else, or by a run of ours whose status a
// crash lost) starts its bound now, so nothing is waited on forever.
func (s *Service) boundExceeded(st *infrav1.OpenStackNodeImageReleaseStatus, bound time.Duration) bool {
	now := s.opts.Now()
	if st.TransferStartedAt == nil {
		st.TransferStartedAt = &metav1.Time{Time: now}
		return false
	}
	return now.Sub(st.TransferStartedAt.Time) > bound
}

// queued handles an image without data: a transfer failed, is waiting for its backoff, is
// starting, or has to be started.
func (s *Service) queued(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease, img *images.Image, prevStatus images.ImageStatus) (Outcome, error) {
	st := &obj.Status
	now := s.opts.Now()
	if st.TransferStartedAt != nil && (prevStatus == images.ImageStatusSaving || prevStatus == images.ImageStatusUploading) {
		// Glance took data, then put the image back: the upload failed on its side.
		return s.attemptFailed(ctx, obj, fmt.Sprintf("Glance returned image %s to queued after receiving data", img.ID))
	}
	if st.TransferStartedAt != nil {
		if failed, _ := img.Properties[propertyFailedImport].(string); failed != "" {
			return s.attemptFailed(ctx, obj, fmt.Sprintf("Glance reported the web-download import of image %s as failed (os_glance_failed_import=%s)", img.ID, failed))
		}
		if now.Sub(st.TransferStartedAt.Time) > s.opts.ImportTimeout {
			return s.attemptFailed(ctx, obj, fmt.Sprintf("image %s stayed queued for %s after its import was started", img.ID, s.opts.ImportTimeout))
		}
		return Outcome{Reason: infrav1.ImportingReason, Message: fmt.Sprintf("Waiting for Glance to start importing image %s", img.ID), RequeueAfter: s.opts.PollInterval}, nil
	}
	if st.RetryAt != nil && now.Before(st.RetryAt.Time) {
		return Outcome{Reason: infrav1.RetryingReason, Message: fmt.Sprintf("Retrying the transfer of image %s after a failure (attempt %d of %d)", img.ID, st.TransferAttempts+1, s.opts.MaxTransferAttempts), RequeueAfter: st.RetryAt.Sub(now)}, nil
	}
	if st.TransferAttempts >= s.opts.MaxTransferAttempts {
		return s.giveUp(ctx, obj, &TerminalError{Reason: infrav1.TransferFailedReason, Message: fmt.Sprintf("gave up bringing the data of image %s into Glance after %d attempts", img.ID, st.TransferAttempts)})
	}

	webDownload, err := s.useWebDownload(ctx, obj)
	if err != nil {
		return Outcome{}, err
	}
	st.RetryAt = nil
	st.TransferAttempts++
	if webDownload {
		// Glance fetches the URL from inside the cloud: check it here, as a connection of ours
		// would be checked.
		if err := s.checkURL(ctx, obj); err != nil {
			return Outcome{}, err
		}
		err := s.images.ImportImage(ctx, img.ID, imageimport.CreateOpts{Name: imageimport.WebDownloadMethod, URI: obj.Spec.Image.URL})
		if err != nil {
			st.TransferAttempts--
			if clients.IsConflict(err) {
				// The image moved on (e.g. an import we started before a crash); look again.
				return Outcome{Reason: infrav1.ImportingReason, Message: fmt.Sprintf("Image %s is changing state", img.ID), RequeueAfter: s.opts.PollInterval}, nil
			}
			if t := refusal(err, fmt.Sprintf("the web-download import of image %s", img.ID)); t != nil {
				return s.giveUp(ctx, obj, t)
			}
			return Outcome{}, fmt.Errorf("starting the import of image %s: %w", img.ID, err)
		}
		st.TransferStartedAt = &metav1.Time{Time: now}
		st.ImageStatus = string(images.ImageStatusImporting)
		return Outcome{Reason: infrav1.ImportingReason, Message: fmt.Sprintf("Glance is importing image %s from %s", img.ID, obj.Spec.Image.URL), RequeueAfter: s.opts.PollInterval}, nil
	}

	if err := s.upload(ctx, obj, img.ID); err != nil {
		var mismatch *HashMismatchError
		var download *DownloadError
		var stalled *TransferStalledError
		switch {
		case errors.Is(err, egress.ErrRefused):
			// Refused at connect time (e.g. a redirect to a refused address): retrying cannot help,
			// and the queued image this operator created must not stay behind.
			st.TransferAttempts--
			return s.giveUp(ctx, obj, &TerminalError{Reason: infrav1.URLRefusedReason, Message: err.Error()})
		case errors.As(err, &mismatch):
			return s.refuse(ctx, obj, mismatch)
		case errors.As(err, &download):
			return s.attemptFailed(ctx, obj, download.Error())
		case errors.As(err, &stalled):
			return s.attemptFailed(ctx, obj, stalled.Error())
		}
		if t := refusal(err, fmt.Sprintf("the upload of image %s", img.ID)); t != nil {
			if t.Reason == infrav1.QuotaExceededReason {
				// Not a failed transfer: the same bytes fit once the quota is raised.
				st.TransferAttempts--
			}
			return s.giveUp(ctx, obj, t)
		}
		// Transient (connection reset, 503, re-authentication mid-stream) or credentials: not
		// the image's fault, so it does not use up an attempt.
		st.TransferAttempts--
		return Outcome{}, fmt.Errorf("uploading image %s: %w", img.ID, err)
	}
	got, err := s.images.GetImage(ctx, img.ID)
	if err != nil {
		return Outcome{}, fmt.Errorf("getting image %s after the upload: %w", img.ID, err)
	}
	st.ImageStatus = string(got.Status)
	if got.Status == images.ImageStatusActive {
		return Outcome{Ready: true, Reason: infrav1.ImageActiveReason, Message: fmt.Sprintf("Image %s is active in Glance", img.ID)}, nil
	}
	if got.Status == images.ImageStatusSaving || got.Status == images.ImageStatusUploading {
		// Glance still processes the bytes: SavingTimeout runs from the start of the upload.
		st.TransferStartedAt = &metav1.Time{Time: now}
	}
	return Outcome{Reason: infrav1.UploadingReason, Message: fmt.Sprintf("Glance is processing the upload of image %s", img.ID), RequeueAfter: s.opts.PollInterval}, nil
}

// giveUp returns t after deleting the image when this operator created it: a failed image of
// ours must not stay behind (queued, half-written) where it counts against the quota and where
// a retry would find it instead of starting clean.
func (s *Service) giveUp(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease, t *TerminalError) (Outcome, error) {
	st := &obj.Status
	st.TransferStartedAt, st.RetryAt = nil, nil
	if !st.CreatedImage || st.ImageID == "" {
		return Outcome{}, t
	}
	id := st.ImageID
	if err := s.images.DeleteImage(ctx, id); err != nil && !clients.IsNotFound(err) {
		// Still recorded as ours: deleting the object deletes it, a retry reuses it.
		ctrl.LoggerFrom(ctx).Error(err, "Deleting a failed image", "imageID", id)
		t.Message += fmt.Sprintf("; deleting image %s, which the operator created, failed (%s), it is deleted with this object", id, clients.Classify(err).Problem)
		return Outcome{}, t
	}
	ctrl.LoggerFrom(ctx).Info("Deleted a failed Glance image", "imageID", id)
	st.ImageID, st.CreatedImage, st.ImageStatus = "", false, ""
	t.Message += fmt.Sprintf("; image %s, which the operator created, was deleted so that a retry starts clean", id)
	return Outcome{}, t
}

// checkURL applies the egress policy to the image URL: a refusal is terminal (the release or
// the policy must change), a failed lookup is retried.
func (s *Service) checkURL(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease) error {
	err := s.opts.Egress.CheckURL(ctx, obj.Spec.Image.URL, nil)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, egress.ErrRefused):
		return &TerminalError{Reason: infrav1.URLRefusedReason, Message: err.Error()}
	default:
		return fmt.Errorf("checking image URL: %w", err)
	}
}

// attemptFailed records a failed transfer and schedules the next one, or gives up.
func (s *Service) attemptFailed(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease, why string) (Outcome, error) {
	st := &obj.Status
	st.TransferStartedAt = nil
	if st.TransferAttempts >= s.opts.MaxTransferAttempts {
		st.RetryAt = nil
		return s.giveUp(ctx, obj, &TerminalError{Reason: infrav1.TransferFailedReason, Message: fmt.Sprintf("gave up after %d attempts: %s", st.TransferAttempts, why)})
	}
	backoff := s.backoff(st.TransferAttempts)
	st.RetryAt = &metav1.Time{Time: s.opts.Now().Add(backoff).Truncate(time.Second)}
	return Outcome{Reason: infrav1.RetryingReason, Message: fmt.Sprintf("Attempt %d of %d failed: %s", st.TransferAttempts, s.opts.MaxTransferAttempts, why), RequeueAfter: backoff}, nil
}

// replaceStuck deletes an image of ours that can no longer receive data, so that the next
// reconcile creates a fresh one; the attempt counts.
func (s *Service) replaceStuck(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease, why string) (Outcome, error) {
	st := &obj.Status
	if !st.CreatedImage {
		return Outcome{}, &TerminalError{Reason: infrav1.ImageUnusableReason, Message: why + "; the image was not created by the operator, so it is left alone"}
	}
	if err := s.images.DeleteImage(ctx, st.ImageID); err != nil && !clients.IsNotFound(err) {
		return Outcome{}, fmt.Errorf("deleting stuck image %s: %w", st.ImageID, err)
	}
	st.ImageID, st.CreatedImage, st.ImageStatus = "", false, ""
	return s.attemptFailed(ctx, obj, why)
}

// refuse handles a hash mismatch: the upload was aborted before its last byte, so Glance never
// made the image active; its record is deleted (when ours) so that nothing can boot from it.
func (s *Service) refuse(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease, mismatch *HashMismatchError) (Outcome, error) {
	st := &obj.Status
	id := st.ImageID
	action := "the upload was aborted"
	if st.CreatedImage {
		if err := s.images.DeleteImage(ctx, id); err != nil && !clients.IsNotFound(err) {
			return Outcome{}, fmt.Errorf("deleting image %s after a hash mismatch: %w", id, err)
		}
		st.ImageID, st.CreatedImage, st.ImageStatus = "", false, ""
		action = "the upload was aborted and the image deleted"
	}
	st.TransferStartedAt, st.RetryAt = nil, nil
	return Outcome{}, &TerminalError{Reason: infrav1.HashMismatchReason, Message: fmt.Sprintf("%s; %s (image %s)", mismatch.Error(), action, id)}
}

func (s *Service) backoff(attempts int32) time.Duration {
	d := s.opts.RetryBackoff
	for i := int32(1); i < attempts && d < maxRetryBackoff; i++ {
		d *= 2
	}
	return min(d, maxRetryBackoff)
}

// useWebDownload says whether Glance should fetch the file itself: only when no hash is asked
// for (Glance's own hash describes the stored, possibly converted bytes, so it cannot verify the
// download) and the cloud offers the method.
func (s *Service) useWebDownload(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease) (bool, error) {
	if obj.Spec.Image.Hash != nil {
		return false, nil
	}
	info, err := s.images.GetImportInfo(ctx)
	if err != nil {
		if clients.IsNotFound(err) {
			// A Glance without the interoperable import API.
			return false, nil
		}
		return false, fmt.Errorf("getting the import methods: %w", err)
	}
	return slices.Contains(info.ImportMethods.Value, string(imageimport.WebDownloadMethod)), nil
}

// find looks the image up by the ID in status, by createOpts.id, then by name and tags in every
// listing Glance has (default, hidden, community, hidden community): a lookup that misses hidden
// or community images would create the same image on every reconcile.
func (s *Service) find(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease) (*images.Image, error) {
	st := &obj.Status
	opts := obj.Spec.Image.CreateOpts
	for _, id := range []string{st.ImageID, opts.ID} {
		if id == "" {
			continue
		}
		img, err := s.images.GetImage(ctx, id)
		switch {
		case err == nil:
			return img, nil
		case clients.IsNotFound(err):
			if id == st.ImageID {
				// Deleted behind our back: forget it.
				st.ImageID, st.CreatedImage, st.ImageStatus = "", false, ""
				st.TransferStartedAt, st.RetryAt = nil, nil
			}
		default:
			return nil, fmt.Errorf("getting image %s: %w", id, err)
		}
	}
	if opts.ID != "" {
		// Glance is asked for this exact ID: create it with it.
		return nil, nil
	}
	queries := []images.ListOpts{
		{},
		{Hidden: true},
		{Visibility: images.ImageVisibilityCommunity},
		{Visibility: images.ImageVisibilityCommunity, Hidden: true},
	}
	var found []images.Image
	for _, q := range queries {
		q.Name, q.Tags = opts.Name, opts.Tags
		list, err := s.images.ListImages(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("listing images named %q: %w", opts.Name, err)
		}
		for _, img := range list {
			if img.Name == opts.Name && !slices.ContainsFunc(found, func(f images.Image) bool { return f.ID == img.ID }) {
				found = append(found, img)
			}
		}
	}
	return pick(found), nil
}

// pick prefers an active image, then one receiving data, then a queued one, and ignores images
// on their way out; Glance lists newest first, so ties go to the newest.
func pick(found []images.Image) *images.Image {
	rank := map[images.ImageStatus]int{
		images.ImageStatusActive: 4, images.ImageStatusImporting: 3, images.ImageStatusSaving: 3,
		images.ImageStatusUploading: 3, images.ImageStatusQueued: 2,
	}
	var best *images.Image
	for i := range found {
		if r := rank[found[i].Status]; r > 0 && (best == nil || r > rank[best.Status]) {
			best = &found[i]
		}
	}
	return best
}

// createOpts maps the spec to Glance and stamps the SCS image metadata properties. Properties
// given in the spec win, so that a release can say provided_until or its real build date.
func createOpts(obj *infrav1.OpenStackNodeImageRelease, now time.Time) images.CreateOpts {
	o := obj.Spec.Image.CreateOpts
	props := map[string]string{
		PropertyPurpose: "k8snode",
		PropertySource:  obj.Spec.Image.URL,
		// The build date is not in node-images.yaml; the day the image entered this cloud is
		// the closest fact the operator has.
		PropertyBuildDate: now.UTC().Format("2006-01-02"),
		// A node image version is immutable: a new version is a new image, never a replacement.
		PropertyReplaceFrequency: "never",
	}
	maps.Copy(props, o.Properties)
	// After the spec's properties: a release must not be able to claim (or disown) an image.
	// Ownership is a property, not a client-chosen image ID derived from the UID: Glance never
	// lets a deleted image's ID be used again, so a derived ID would block every re-create (a
	// stuck or refused image replaced) unless a counter were kept, and that counter would live in
	// the status a crash loses. The lookup by name and tags finds the image after any crash; the
	// property says whose it is. createOpts.id, when a release sets one, is still honoured.
	props[PropertyOwnerUID] = string(obj.UID)
	props[PropertyOwner] = obj.Namespace + "/" + obj.Name
	opts := images.CreateOpts{
		Name: o.Name, ID: o.ID, Hidden: o.Hidden, Tags: o.Tags,
		ContainerFormat: o.ContainerFormat, DiskFormat: o.DiskFormat,
		MinDisk: o.MinDisk, MinRAM: o.MinRAM, Protected: o.Protected, Properties: props,
	}
	if o.Visibility != nil {
		v := images.ImageVisibility(*o.Visibility)
		opts.Visibility = &v
	}
	return opts
}

// Delete deletes the image of obj; an image that is already gone is success.
func (s *Service) Delete(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease) error {
	if obj.Status.ImageID == "" {
		return nil
	}
	if err := s.images.DeleteImage(ctx, obj.Status.ImageID); err != nil && !clients.IsNotFound(err) {
		return fmt.Errorf("deleting image %s: %w", obj.Status.ImageID, err)
	}
	return nil
}

// Check returns the Glance status of the recorded image, for a slow re-check of converged
// objects; "" when it is gone.
func (s *Service) Check(ctx context.Context, id string) (string, error) {
	img, err := s.images.GetImage(ctx, id)
	if clients.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("getting image %s: %w", id, err)
	}
	return string(img.Status), nil
}
